"""TLS and mutual TLS on real loopback servers: who is refused, the explainer's calls to TLS adapters (several
behind one round-robin address), certificates reloaded without a restart, the health-only port, /metrics on
its own host and connections closed after their age."""

from __future__ import annotations

import shutil
import threading
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certs import CA
from images import png
from multishap.adapters.server import serve_adapter
from multishap.client import ExplainerClient
from multishap.service.rpc.config import load_config
from multishap.service.explainer import serve_explainer
from multishap.service.rpc.tls import ClientTLS, ServerTLS, is_loopback, open_channel, server_credentials
from servers import RecordingBackend, cli_process, free_port

TEXT = "a cat"
PARAMS = {"family": "mixed", "seed": "1"}


def check(address: str, tls: ClientTLS | None = None) -> int:
    """The health status a fresh channel gets (SERVING is 1); grpc.RpcError when the call is refused."""
    with open_channel(address, tls) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5).status


def refused(address: str, tls: ClientTLS | None = None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        check(address, tls)
    return info.value.code()


@pytest.fixture
def cas(tmp_path):
    return CA(tmp_path, "one"), CA(tmp_path, "two")


def test_a_tls_server_refuses_plaintext_and_clients_that_trust_another_ca(cas):
    one, two = cas
    pair = one.server()
    running, _ = serve_adapter(RecordingBackend(), tls=ServerTLS(pair.cert, pair.key))
    try:
        assert check(running.address, ClientTLS(one.cert)) == health_pb2.HealthCheckResponse.SERVING
        assert refused(running.address) == grpc.StatusCode.UNAVAILABLE
        assert refused(running.address, ClientTLS(two.cert)) == grpc.StatusCode.UNAVAILABLE
        assert check(f"localhost:{running.port}", ClientTLS(one.cert)) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(None)


def test_mutual_tls_needs_a_client_certificate_its_ca_signed(cas):
    one, two = cas
    pair, mine, foreign = one.server(), one.client(), two.client()
    running, _ = serve_adapter(RecordingBackend(), tls=ServerTLS(pair.cert, pair.key, client_ca=one.cert))
    try:
        assert refused(running.address, ClientTLS(one.cert)) == grpc.StatusCode.UNAVAILABLE
        assert refused(running.address, ClientTLS(one.cert, foreign.cert, foreign.key)) == grpc.StatusCode.UNAVAILABLE
        assert check(running.address, ClientTLS(one.cert, mine.cert, mine.key)) == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(None)


def test_the_explainer_explains_over_tls_adapters_behind_one_round_robin_address(cas, tmp_path):
    one, _ = cas
    pair, client = one.server(), one.client()
    tls = ServerTLS(pair.cert, pair.key, client_ca=one.cert)
    backends = [RecordingBackend(), RecordingBackend()]
    adapters = [serve_adapter(b, tls=tls)[0] for b in backends]
    config = tmp_path / "explainer.toml"
    pods = ",".join(f"127.0.0.1:{a.port}" for a in adapters)
    config.write_text(
        f'[targets.pods]\naddresses = ["ipv4:{pods}"]\nmax_batch = 4\ntls_ca = "{one.cert}"\n'
        f'tls_cert = "{client.cert}"\ntls_key = "{client.key}"\ntls_server_name = "localhost"\n'
        f'[targets.dns]\naddresses = ["dns:///localhost:{adapters[0].port}"]\ntls_ca = "{one.cert}"\n'
        f'tls_cert = "{client.cert}"\ntls_key = "{client.key}"\n')
    loaded = load_config(config, environ={})
    assert loaded.targets["pods"].tls == ClientTLS(one.cert, client.cert, client.key, "localhost")
    running, servicer = serve_explainer(loaded)
    try:
        with ExplainerClient(running.address, timeout=60) as sdk:
            pods_exp = sdk.explain(png(), TEXT, target="pods", grid=(2, 2), method="exact", parameters=PARAMS)
            reached = [len(b.seen) for b in backends]
            dns_exp = sdk.explain(png(), TEXT, target="dns", grid=(2, 2), method="exact", parameters=PARAMS)
    finally:
        running.stop(None)
        servicer.close()
        for a in adapters:
            a.stop(None)
    assert pods_exp.evaluations == dns_exp.evaluations == 64
    assert (pods_exp.phi == dns_exp.phi).all()
    assert all(reached), f"round robin reached every server behind the address (instances prepared: {reached})"


def test_target_tls_settings_are_checked_when_the_configuration_loads(cas, tmp_path):
    one, _ = cas
    config = tmp_path / "explainer.toml"
    cases = {
        f'tls_cert = "{one.cert}"': "without tls_ca",
        f'tls_ca = "{tmp_path / "missing.pem"}"': "cannot be read: No such file or directory",
        f'tls_ca = "{config}"': "is not a bundle of PEM certificates",
        f'tls_ca = "{one.cert}"\ntls_cert = "{one.cert}"': "give both or neither",
        'tls_ca = 3': "tls_ca must be a non-empty string",
    }
    for keys, sentence in cases.items():
        config.write_text(f'[targets.t]\naddresses = ["127.0.0.1:1"]\n{keys}\n')
        with pytest.raises(ValueError, match=sentence):
            load_config(config, environ={})


def test_bad_pem_files_are_refused_with_a_sentence_that_holds_no_key(cas, tmp_path):
    one, two = cas
    pair, other = one.server(), two.server()
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    key_text = pair.key.read_text()
    for settings in (ServerTLS(garbage, pair.key), ServerTLS(pair.cert, other.key),
                     ServerTLS(pair.cert, pair.key, client_ca=garbage), ServerTLS(tmp_path / "none.pem", pair.key)):
        with pytest.raises(ValueError, match="TLS") as info:
            server_credentials(settings)
        assert key_text.splitlines()[1] not in str(info.value)
    with pytest.raises(ValueError, match="give both or neither"):
        ClientTLS(one.cert, cert=pair.cert)


def test_certificates_are_reloaded_without_a_restart(cas):
    one, two = cas
    pair, renewed = one.server(), two.server("renewed")
    running, _ = serve_adapter(RecordingBackend(), tls=ServerTLS(pair.cert, pair.key))
    try:
        assert check(running.address, ClientTLS(one.cert)) == health_pb2.HealthCheckResponse.SERVING
        assert refused(running.address, ClientTLS(two.cert)) == grpc.StatusCode.UNAVAILABLE
        shutil.copyfile(renewed.key, pair.key)
        shutil.copyfile(renewed.cert, pair.cert)
        assert check(running.address, ClientTLS(two.cert)) == health_pb2.HealthCheckResponse.SERVING
        assert refused(running.address, ClientTLS(one.cert)) == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop(None)


def test_the_health_port_answers_in_plaintext_while_the_main_port_needs_client_certificates(cas):
    one, _ = cas
    pair = one.server()
    health_port = free_port()
    running, _ = serve_adapter(RecordingBackend(), tls=ServerTLS(pair.cert, pair.key, client_ca=one.cert),
                               health_port=health_port)
    try:
        assert running.health_port == health_port
        assert check(f"127.0.0.1:{health_port}") == health_pb2.HealthCheckResponse.SERVING
        assert refused(running.address) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary("/multishap.v1.Scorer/Describe")(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        running.health.enter_graceful_shutdown()
        assert check(f"127.0.0.1:{health_port}") == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        running.stop(None)


def metrics_answer(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as reply:
            return b"multishap_rpc_errors" in reply.read()
    except OSError:
        return False


def test_metrics_stay_on_their_own_host_whatever_the_grpc_host():
    running, _ = serve_adapter(RecordingBackend(), host="127.0.0.2")
    try:
        assert metrics_answer("127.0.0.1", running.metrics_port)
        assert not metrics_answer("127.0.0.2", running.metrics_port)
        assert check(f"127.0.0.2:{running.port}") == health_pb2.HealthCheckResponse.SERVING
    finally:
        running.stop(None)
    running, _ = serve_adapter(RecordingBackend(), metrics_host="127.0.0.3")
    try:
        assert metrics_answer("127.0.0.3", running.metrics_port)
        assert not metrics_answer("127.0.0.1", running.metrics_port)
    finally:
        running.stop(None)


def test_a_connection_is_closed_after_its_age_and_the_client_reconnects():
    running, _ = serve_adapter(RecordingBackend(), max_connection_age_s=0.2)
    states, idle = [], threading.Event()

    def watch(state: grpc.ChannelConnectivity) -> None:
        states.append(state)
        if grpc.ChannelConnectivity.READY in states and state == grpc.ChannelConnectivity.IDLE:
            idle.set()

    channel = grpc.insecure_channel(running.address)
    try:
        channel.subscribe(watch, try_to_connect=True)
        stub = health_pb2_grpc.HealthStub(channel)
        stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert idle.wait(30), f"the server never closed the connection (states {states})"
        assert stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    finally:
        channel.close()
        running.stop(None)
    with pytest.raises(ValueError, match="max_connection_age_s"):
        serve_adapter(RecordingBackend(), max_connection_age_s=-1)


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1:50050", True), ("localhost:1", True), ("[::1]:1", True), ("dns:///localhost:1", True),
    ("ipv4:127.0.0.1:1,127.0.0.2:2", True), ("unix:/tmp/s", True), ("10.0.0.1:1", False),
    ("explainer.svc:50050", False), ("ipv4:127.0.0.1:1,10.0.0.1:2", False), ("dns://8.8.8.8/localhost:1", False),
])
def test_which_addresses_are_loopback(address, loopback):
    assert is_loopback(address) is loopback



@pytest.mark.parametrize("flags, sentence", [
    (["--tls-cert", "{cert}"], "error: --tls-cert and --tls-key go together"),
    (["--tls-client-ca", "{ca}"], "error: --tls-client-ca (mutual TLS) needs --tls-cert and --tls-key"),
    (["--tls-cert", "{ca}", "--tls-key", "{cert}"], "are not a PEM certificate chain and the unencrypted PEM"),
])
def test_a_server_command_with_bad_tls_files_stops_with_one_line(cas, flags, sentence):
    one, _ = cas
    pair = one.server()
    argv = [f.format(cert=pair.cert, ca=one.cert) for f in flags]
    process = cli_process("adapter", "synthetic", "--port", "0", "--metrics-port", "-1", *argv)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and sentence in err
    assert len(err.strip().splitlines()) == 1
