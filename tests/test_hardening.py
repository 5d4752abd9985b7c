"""A service no request can tie up or mislead: limits before work, cancellation that reaches
the computation, overload pushback, capped echoes, honest defaults, start-up and logs.
Real servers on loopback, through the generated stubs."""

import io
import logging
import threading
import time
import urllib.request

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from PIL import Image

from images import png
from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.rpc.config import Limits, ServerSettings
from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc, scorer_pb2, scorer_pb2_grpc
from servers import SlowBackend, adapters, cli_process, explainer, free_port, instance, wait_serving


def forward_passes(adapter) -> float:
    return adapter.registry.get_sample_value("multishap_adapter_forward_passes_total") or 0.0


def in_progress(running) -> float:
    return running.registry.get_sample_value("multishap_explanations_in_progress")


def explain_request(**fields):
    fields.setdefault("target", "syn")
    fields.setdefault("instance", instance())
    fields.setdefault("budget", 500)
    return explainer_pb2.ExplainRequest(**fields)


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        list(call)
    return err.value


def becomes_idle(running, within: float = 2.0) -> bool:
    """True once no explanation is in progress, polled for at most ``within`` seconds."""
    stop = time.monotonic() + within
    while time.monotonic() < stop:
        if in_progress(running) == 0:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def service():
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}, max_batch=256) as (e, stub, _):
        yield a, e, stub


# -- 2. limits, refused before any work ------------------------------------------------------

@pytest.mark.parametrize("request_, limit", [
    (explain_request(instance=instance(grid=common_pb2.Grid(rows=64, cols=64))), "max_grid_side = 32"),
    (explain_request(instance=instance(grid=common_pb2.Grid(rows=20, cols=20))), "max_patches = 256"),
    (explain_request(instance=instance(text="word " * 1000)), "max_text_chars = 4096"),
    (explain_request(instance=instance(text="a " * 1000)), "max_tokens = 128"),
    (explain_request(instance=instance(image=png(16, 16), grid=common_pb2.Grid(rows=16, cols=16),
                                       text="a " * 100)), "max_players = 320"),
    (explain_request(budget=10**9), "max_budget = 200000"),
])
def test_oversized_explanations_are_refused_before_scoring(service, request_, limit):
    a, _, stub = service
    before = forward_passes(a)
    err = refusal(stub.Explain(request_, timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and limit in err.details()
    assert forward_passes(a) == before


@pytest.mark.parametrize("fields, code, message", [
    (dict(steps=2**32 - 1), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_steps = 100"),
    (dict(macro_game=True, chunks=40), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_chunks = 10"),
    (dict(macro_game=True, steps=100, chunks=10), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_budget = 200000"),
    (dict(eps=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "eps must be a positive number"),
    (dict(eps=float("inf")), grpc.StatusCode.INVALID_ARGUMENT, "eps must be a positive number"),
    (dict(eps=-1.0), grpc.StatusCode.INVALID_ARGUMENT, "eps must be a positive number"),
    (dict(explainer="gradcam"), grpc.StatusCode.INVALID_ARGUMENT, "explainer must be one of"),
    (dict(patch_scores=[float("nan")] * 9, token_scores=[1.0] * 6), grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
    (dict(patch_scores=[1.0] * 5000, token_scores=[1.0] * 6), grpc.StatusCode.RESOURCE_EXHAUSTED, "max_scores"),
])
def test_bad_faithfulness_fields_are_refused_before_any_work(service, fields, code, message):
    a, _, stub = service
    before = forward_passes(a)
    request = explainer_pb2.FaithfulnessRequest(target="syn", instance=instance(), budget=20_000, **fields)
    err = refusal(stub.Faithfulness(request, timeout=30))
    assert err.code() == code and message in err.details()
    assert forward_passes(a) == before


def test_the_adapter_refuses_an_oversized_score_call_before_scoring(service):
    a, _, _ = service
    scorer = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(a.address))
    count = 300_000
    request = scorer_pb2.ScoreRequest(instance=instance(), num_players=15, num_coalitions=count,
                                      coalitions=b"\xff\xfe" * count)
    before = forward_passes(a)
    with pytest.raises(grpc.RpcError) as err:
        scorer.Score(request, timeout=30)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_budget = 200000" in err.value.details()
    assert forward_passes(a) == before


# -- 3. cancellation reaches the computation -------------------------------------------------

def big_game():
    """256 patches x 64 tokens: seconds of pure computation beyond its scoring."""
    return instance(image=png(64, 64), grid=common_pb2.Grid(rows=16, cols=16), text=" ".join(["w"] * 64))


def test_deadline_stops_the_estimator_itself_and_frees_the_slot(service):
    _, e, stub = service
    err = refusal(stub.Explain(explain_request(instance=big_game(), method="kernel", budget=20_000), timeout=1.5))
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert becomes_idle(e)
    assert e.registry.get_sample_value("multishap_rpc_errors_total",
                                       {"method": "Explain", "code": "DEADLINE_EXCEEDED"}) >= 1


def test_cancel_stops_faithfulness_work_and_frees_the_slot(service):
    _, e, stub = service
    request = explainer_pb2.FaithfulnessRequest(target="syn", instance=big_game(), budget=20_000)
    call = stub.Faithfulness(request, timeout=60)
    next(call)
    call.cancel()
    assert becomes_idle(e)


# -- 4. images -------------------------------------------------------------------------------

def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_a_small_file_declaring_a_huge_image_is_resource_exhausted_at_both_servers(service):
    a, _, stub = service
    bomb = encoded(Image.new("1", (6000, 6000)), "PNG")
    assert len(bomb) < 10_000
    err = refusal(stub.Explain(explain_request(instance=instance(image=bomb)), timeout=30))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "max_image_pixels" in err.details()
    scorer = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(a.address))
    with pytest.raises(grpc.RpcError) as direct:
        scorer.Describe(scorer_pb2.DescribeRequest(instance=instance(image=bomb)), timeout=30)
    assert direct.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_formats_outside_the_allow_list_are_refused(service):
    _, _, stub = service
    for fmt in ("EPS", "TIFF"):
        err = refusal(stub.Explain(explain_request(instance=instance(image=encoded(Image.new("RGB", (32, 24)), fmt))),
                                   timeout=30))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "PNG, JPEG, WEBP, GIF, BMP" in err.details()
    ok = encoded(Image.new("RGB", (32, 24), "red"), "WEBP")
    assert list(stub.Explain(explain_request(instance=instance(image=ok)), timeout=30))[-1].explanation.evaluations


def test_the_adapter_cache_is_bounded_in_bytes():
    running, servicer = serve_adapter(SyntheticBackend(), cache_bytes=8_000_000)
    try:
        stub = scorer_pb2_grpc.ScorerStub(grpc.insecure_channel(running.address))
        for seed in range(6):
            stub.Describe(scorer_pb2.DescribeRequest(instance=instance(image=png(1000, 1000, seed=seed))), timeout=30)
        held = running.registry.get_sample_value("multishap_adapter_cache_bytes")
        assert 0 < held <= 8_000_000
        assert running.registry.get_sample_value("multishap_adapter_cached_instances") == 2
    finally:
        running.stop(None)


# -- 5. overload -----------------------------------------------------------------------------

def test_overload_queues_then_pushes_back_and_health_stays_answerable():
    limits = Limits(max_concurrent_explanations=2, max_queued_explanations=3, max_queue_wait_s=30)
    with adapters(SlowBackend(0.05)) as (a,), \
            explainer({"syn": [a.address]}, limits, max_batch=16, max_in_flight=1) as (e, stub, _):
        calls = [stub.Explain(explain_request(budget=400, seed=s), timeout=60) for s in range(12)]
        outcomes: list = [None] * len(calls)

        def run(k):
            try:
                outcomes[k] = list(calls[k])[-1].explanation
            except grpc.RpcError as err:
                outcomes[k] = err

        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
        for t in threads:
            t.start()
        channel = grpc.insecure_channel(e.address)
        health = health_pb2_grpc.HealthStub(channel)
        for _ in range(20):
            reply = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
            assert explainer_pb2_grpc.ExplainerStub(channel).ListTargets(explainer_pb2.ListTargetsRequest(), timeout=1)
        for t in threads:
            t.join()
        done = [o for o in outcomes if isinstance(o, explainer_pb2.Explanation)]
        refused = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        assert len(done) == 5 and len(refused) == 7
        for err in refused:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "the server is busy" in err.details()
            status = rpc_status.from_call(err)
            info = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(info) and info.retry_delay.ToTimedelta().total_seconds() > 0
        assert becomes_idle(e)


def test_a_limit_refusal_names_its_limit_and_carries_no_retry_pushback(service):
    _, _, stub = service
    err = refusal(stub.Explain(explain_request(budget=10**9), timeout=30))
    details = rpc_status.from_call(err).details
    assert not any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in details)
    quota = error_details_pb2.QuotaFailure()
    assert len(details) == 1 and details[0].Unpack(quota)
    assert [v.subject for v in quota.violations] == ["max_budget"]
    assert "over this server's limit max_budget" in quota.violations[0].description


def test_readiness_follows_the_targets():
    port = free_port()
    with explainer({"syn": [f"127.0.0.1:{port}"]}, server=ServerSettings(probe_interval_s=0.2)) as (e, stub, _):
        health = health_pb2_grpc.HealthStub(grpc.insecure_channel(e.address))

        def status(service_name):
            return health.Check(health_pb2.HealthCheckRequest(service=service_name), timeout=2).status

        assert status("") == health_pb2.HealthCheckResponse.SERVING
        assert status("multishap.v1.Explainer") == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=2).targets[0].reachable
        adapter, _ = serve_adapter(SyntheticBackend(), port=port, metrics_port=None)
        try:
            stop = time.monotonic() + 5
            while status("multishap.v1.Explainer") != health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < stop
                time.sleep(0.05)
            assert status("multishap.target.syn") == health_pb2.HealthCheckResponse.SERVING
            assert stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=2).targets[0].reachable
        finally:
            adapter.stop(None)


# -- 6. echoed input is capped ---------------------------------------------------------------

@pytest.mark.parametrize("fields, code", [
    (dict(target="t" * 100_000), grpc.StatusCode.NOT_FOUND),
    (dict(method="m" * 100_000), grpc.StatusCode.INVALID_ARGUMENT),
    (dict(index="i" * 100_000), grpc.StatusCode.INVALID_ARGUMENT),
    (dict(instance=instance(family="f" * 200)), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_huge_values_are_not_echoed_in_full(service, fields, code):
    _, _, stub = service
    err = refusal(stub.Explain(explain_request(**fields), timeout=30))
    assert err.code() == code and len(err.details()) <= 400 and "…" in err.details()


# -- 7. the contract means what it says ------------------------------------------------------

def test_enums_are_case_insensitive_and_unknown_parameters_are_refused(service):
    _, _, stub = service
    exp = list(stub.Explain(explain_request(method="KERNEL", index="sii"), timeout=30))[-1].explanation
    assert exp.method == "kernel" and exp.index == "SII"
    err = refusal(stub.Explain(explain_request(instance=instance(parameters={"famly": "mixed"})), timeout=30))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown instance parameter 'famly'" in err.details() and "family" in err.details()


# -- 10. start-up ----------------------------------------------------------------------------

def test_a_taken_port_fails_before_the_backend_is_built():
    first, _ = serve_adapter(SyntheticBackend(), metrics_port=None)
    built = []
    try:
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{first.port}"):
            serve_adapter(lambda: built.append(1) or SyntheticBackend(), port=first.port, metrics_port=None)
        assert built == []
    finally:
        first.stop(None)


# -- 11. logs and metrics --------------------------------------------------------------------

def test_garbage_protobuf_is_invalid_argument_counted_and_logged_in_one_line(service, caplog):
    a, e, _ = service
    channel = grpc.insecure_channel(e.address)
    raw = channel.unary_stream("/multishap.v1.Explainer/Explain", request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    labels = {"method": "Explain", "code": "INVALID_ARGUMENT"}
    before = e.registry.get_sample_value("multishap_rpc_errors_total", labels) or 0.0
    with caplog.at_level(logging.INFO):
        for garbage in (b"\xff\xff\xff", b"\x0a\xff\x01", b"\x12\x05abc"):
            err = refusal(raw(garbage, timeout=10))
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf" in err.details()
    assert e.registry.get_sample_value("multishap_rpc_errors_total", labels) == before + 3
    assert "Traceback" not in caplog.text
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rpc method=Explain")]
    assert len(lines) == 3 and all("code=INVALID_ARGUMENT" in line and "seconds=" in line for line in lines)


def test_each_rpc_logs_one_structured_line(service, caplog):
    _, _, stub = service
    with caplog.at_level(logging.INFO, logger="multishap"):
        exp = list(stub.Explain(explain_request(budget=300), timeout=30))[-1].explanation
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rpc method=Explain")]
    assert lines == [lines[0]] and "code=OK" in lines[0]
    assert "target=syn" in lines[0] and f"evaluations={exp.evaluations}" in lines[0]


def test_process_metrics_are_exported(service):
    a, e, _ = service
    for running in (a, e):
        page = urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics", timeout=5).read().decode()
        assert "process_resident_memory_bytes" in page and "process_open_fds" in page


def test_a_second_adapter_on_a_port_in_use_exits_with_one_line():
    first, _ = serve_adapter(SyntheticBackend(), metrics_port=None)
    try:
        second = cli_process("adapter", "synthetic", "--port", str(first.port), "--metrics-port", "-1")
        out, err = second.communicate(timeout=60)
        assert second.returncode != 0 and "Traceback" not in err
        assert f"could not listen on 127.0.0.1:{first.port}" in err
    finally:
        first.stop(None)


def test_an_invalid_config_value_stops_serve_at_start_up_with_file_key_and_type(tmp_path):
    config = tmp_path / "explainer.toml"
    config.write_text('[targets.syn]\naddresses = ["127.0.0.1:1"]\ntimeout_s = "thirty"\n')
    proc = cli_process("serve", "--config", str(config), "--port", str(free_port()), "--metrics-port", "-1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [f"error: {config} [targets.syn]: timeout_s must be a number; got 'thirty'"]


def test_default_metrics_ports_leave_prometheus_and_alertmanager_alone():
    from multishap.client.cli import build_parser

    parser = build_parser()
    ports = {parser.parse_args(argv).metrics_port for argv in (
        ["serve"], ["adapter", "synthetic"], ["adapter", "hf"],
        ["adapter", "openai", "--base-url", "http://h", "--model", "m"])}
    assert len(ports) == 4 and not ports & {9090, 9093}


def test_sigterm_drains_a_busy_explainer_and_exits():
    import signal

    adapter_port, port = free_port(), free_port()
    adapter = cli_process("adapter", "synthetic", "--port", str(adapter_port), "--metrics-port", "-1")
    server = cli_process("serve", "--port", str(port), "--metrics-port", "-1", "--grace", "1", "--drain-delay", "1",
                         env={"MULTISHAP_TARGETS": f"syn=127.0.0.1:{adapter_port}"})
    try:
        wait_serving(f"127.0.0.1:{adapter_port}", adapter)
        wait_serving(f"127.0.0.1:{port}", server)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = explainer_pb2_grpc.ExplainerStub(channel).Explain(
                explain_request(instance=big_game(), method="kernel", budget=20_000), timeout=120)
            next(call)
            server.send_signal(signal.SIGTERM)
            health = health_pb2_grpc.HealthStub(channel)
            stop = time.monotonic() + 1
            while health.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                assert time.monotonic() < stop
                time.sleep(0.05)
            err = refusal(call)
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
        assert server.wait(timeout=20) == 0
        assert "stopping: NOT_SERVING for 1 s, then in-flight work has 1 s to finish" in server.stderr.read()
    finally:
        for proc in (server, adapter):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_an_adapter_that_comes_up_after_the_explainer_is_used_at_once():
    port = free_port()
    with explainer({"syn": [f"127.0.0.1:{port}"]}) as (_, stub, _):
        time.sleep(1.5)  # the explainer's first connection attempts were refused: its channel is backing off
        adapter, _ = serve_adapter(SyntheticBackend(), port=port, metrics_port=None)
        try:
            assert list(stub.Explain(explain_request(budget=300), timeout=30))[-1].explanation.evaluations <= 300
        finally:
            adapter.stop(None)
