"""No credential leaves the OpenAI adapter: not the API key, not a base URL's password or query tokens.

Real simulated endpoint over HTTP, real openai client, real gRPC servers, and the CLI
adapter as a process. The simulator echoes refused credentials, as some servers do.
"""

from __future__ import annotations

import base64
import logging
import socket
import subprocess
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest

from multishap.adapters.openai import EndpointConfig, OpenAIOptions, RetryPolicy, ScoringOptions
from multishap.adapters.openai.retry import Redactor
from multishap.service.rpc.errors import ResourceExhausted
from multishap.service.rpc.wire import pack_coalitions, unpack_values
from multishap.v1 import explainer_pb2, scorer_pb2, scorer_pb2_grpc
from openai_env import KEY, cli_adapter, cli_args, cli_env, instance, openai_adapter, simulator
from servers import explainer

PASSWORD = "hunter2-secret-pw"
TOKEN = "qtok-9f8e7d6c5b4a"
MASKS = ((np.arange(8)[:, None] >> np.arange(10)) & 1).astype(bool)


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def url_with(sim, userinfo: str = "", query: str = "") -> str:
    return sim.base_url.replace("http://", f"http://{userinfo}@" if userinfo else "http://") + query


def opts(base_url: str, cache: Path, key: str = "") -> OpenAIOptions:
    endpoint = EndpointConfig(base_url, "sim-vlm", key, timeout=2.0,
                              retry=RetryPolicy(max_attempts=2, initial_wait=0.01, max_wait=0.05, deadline=10.0))
    return OpenAIOptions(endpoint=endpoint, scoring=ScoringOptions(score="logprob"), cache_path=cache)


def score(stub, inst, masks: np.ndarray = MASKS) -> scorer_pb2.ScoreResponse:
    return stub.Score(scorer_pb2.ScoreRequest(instance=inst, num_players=masks.shape[1], num_coalitions=len(masks),
                                              coalitions=pack_coalitions(masks)), timeout=30)


def refused(stub, inst) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        score(stub, inst)
    return info.value


def metrics(running) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{running.metrics_port}/metrics").read().decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_absent(secrets: tuple[str, ...], *texts: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


# -- the API key -------------------------------------------------------------------------


def test_a_key_with_surrounding_whitespace_works_and_appears_nowhere(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    inst = instance()
    with simulator(inst) as sim, openai_adapter(opts(sim.base_url, tmp_path / "c.sqlite", key=f" {KEY}\n")) \
            as (running, backend, stub):
        reply = score(stub, inst)
        exported = metrics(running)
    assert len(unpack_values(reply.values, len(MASKS))) == len(MASKS) and sim.traffic.unauthorized == 0
    assert_absent((KEY,), str(reply), caplog.text, exported, repr(backend.options))


@pytest.mark.parametrize("source", ["env", "file"])
def test_the_cli_adapter_strips_a_key_with_a_trailing_newline_and_never_prints_it(tmp_path, source):
    inst = instance()
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\r\n")
    env_key, options = (KEY + "\n", ()) if source == "env" else (None, ("--api-key-file", str(key_file)))
    with simulator(inst) as sim, cli_adapter(sim.base_url, tmp_path / "c.sqlite", env_key, *options) as run, \
            grpc.insecure_channel(run["address"]) as channel:
        reply = score(scorer_pb2_grpc.ScorerStub(channel), inst)
    assert reply.usage.requests == len(MASKS) and sim.traffic.unauthorized == 0
    assert_absent((KEY,), str(reply), run["out"], run["err"])


@pytest.mark.parametrize("raw, flaw", [
    (KEY[:12] + "\x07" + KEY[12:] + "\n", "a control character at position 13"),
    (KEY[:12] + " " + KEY[12:], "a space at position 13"),
    ("\ufeff" + KEY + "\n", "a non-ASCII character at position 1"),
])
@pytest.mark.parametrize("source", ["env", "file"])
def test_the_cli_adapter_refuses_a_key_no_header_can_carry_without_quoting_it(tmp_path, raw, flaw, source):
    key_file = tmp_path / "key"
    key_file.write_text(raw, encoding="utf-8")
    env_key, options = (raw, ()) if source == "env" else (None, ("--api-key-file", str(key_file)))
    where = "OPENAI_API_KEY" if source == "env" else f"--api-key-file {key_file}"
    done = subprocess.run(cli_args("http://127.0.0.1:9/v1", tmp_path / "c.sqlite", *options), env=cli_env(env_key),
                          capture_output=True, text=True, timeout=30)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and done.stdout == "" and len(lines) == 1
    assert lines[0].startswith(f"error: the API key from {where} contains {flaw} of ")
    assert_absent((KEY[:12], KEY[12:]), done.stderr)


def test_a_python_caller_gets_the_same_refusal_and_repr_hides_every_credential():
    with pytest.raises(ValueError) as info:
        EndpointConfig("http://127.0.0.1:9/v1", "m", KEY[:5] + "\x00" + KEY[5:])
    assert "contains a control character at position 6" in str(info.value) and "\n" not in str(info.value)
    assert_absent((KEY[:5], KEY[5:]), str(info.value))
    config = EndpointConfig(f"http://user:{PASSWORD}@127.0.0.1:9/v1?key={TOKEN}", "m", "")
    assert_absent((PASSWORD, TOKEN), repr(config), repr(OpenAIOptions(endpoint=config, cache_path=":memory:")))
    assert "http://127.0.0.1:9/v1?key=[redacted]" in repr(config)


def test_the_redactor_catches_every_form_a_credential_travels_in():
    config = EndpointConfig(f"http://user:{PASSWORD}@127.0.0.1:9/v1?key={TOKEN}", "m", "")
    keyed = EndpointConfig("http://127.0.0.1:9/v1", "m", f"{KEY}\n")
    redact = Redactor(*config.secrets(), *keyed.secrets())
    for text in (f"Illegal header value b'Bearer {KEY}\\n'", f"{KEY}\n", f'{{"auth": "Bearer {KEY}"}}',
                 f"Authorization: Basic {basic('user', PASSWORD)}", f"GET /v1?key={TOKEN}", PASSWORD):
        assert_absent((KEY, PASSWORD, TOKEN, basic("user", PASSWORD)), redact(text))
        assert "[redacted]" in redact(text)
    scrubbed = redact.scrub(ResourceExhausted(f"refused with ?key={TOKEN}", retry_after=2.0))
    assert str(scrubbed) == "refused with ?key=[redacted]" and scrubbed.retry_after == 2.0


# -- credentials in the base URL ---------------------------------------------------------


def test_url_credentials_authenticate_but_never_show(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    inst = instance()
    hidden = (PASSWORD, basic("user", PASSWORD), "wrong-pass-99", basic("user", "wrong-pass-99"))
    with simulator(inst, basic=("user", PASSWORD)) as sim:
        with openai_adapter(opts(url_with(sim, f"user:{PASSWORD}"), tmp_path / "a.sqlite")) as (api, backend, stub), \
                explainer({"api": [api.address]}) as (_, ex, _):
            players = stub.Describe(scorer_pb2.DescribeRequest(instance=inst), timeout=30)
            request = explainer_pb2.ExplainRequest(target="api", instance=inst, method="exact", budget=1024)
            explanation = list(ex.Explain(request, timeout=120))[-1].explanation
            exported = metrics(api)
        accepted = sim.traffic.unauthorized == 0
        with openai_adapter(opts(url_with(sim, "user:wrong-pass-99"), tmp_path / "b.sqlite")) as (_, _, stub):
            wrong = refused(stub, inst)
    with openai_adapter(opts(f"http://user:{PASSWORD}@127.0.0.1:{free_port()}/v1", tmp_path / "c.sqlite")) \
            as (_, _, stub):
        unreachable = refused(stub, inst)
    assert explanation.evaluations == 1024 and accepted
    assert players.model_id == explanation.target.model_id == f"sim-vlm at {sim.base_url}"
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED and "[redacted]" in wrong.details()
    assert unreachable.code() == grpc.StatusCode.UNAVAILABLE and "failed 2 times" in unreachable.details()
    assert_absent(hidden, str(players), str(explanation), wrong.details(), unreachable.details(), caplog.text,
                  exported, repr(backend.options))


def test_query_tokens_go_with_every_request_but_never_show(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    inst = instance()
    with simulator(inst, query={"key": TOKEN}) as sim:
        with openai_adapter(opts(url_with(sim, query=f"?key={TOKEN}"), tmp_path / "a.sqlite", KEY)) \
                as (api, backend, stub):
            reply = score(stub, inst)
            players = stub.Describe(scorer_pb2.DescribeRequest(instance=inst), timeout=30)
            exported = metrics(api)
        accepted = sim.traffic.unauthorized == 0
        with openai_adapter(opts(url_with(sim, query="?key=wrong-token-77"), tmp_path / "b.sqlite", KEY)) \
                as (_, _, stub):
            wrong = refused(stub, inst)
    assert reply.usage.requests == len(MASKS) and accepted
    assert players.model_id == f"sim-vlm at {sim.base_url}?key=[redacted]"
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert_absent((TOKEN, "wrong-token-77"), str(reply), str(players), wrong.details(), caplog.text, exported,
                  repr(backend.options))


def test_rotating_url_credentials_keeps_the_cache(tmp_path):
    inst = instance()
    cache = tmp_path / "c.sqlite"
    with simulator(inst, basic=("user", PASSWORD)) as sim:
        with openai_adapter(opts(url_with(sim, f"user:{PASSWORD}"), cache)) as (_, _, stub):
            first = score(stub, inst)
        sim.authorization = f"Basic {basic('user', 'rotated-pass-2')}"
        with openai_adapter(opts(url_with(sim, "user:rotated-pass-2"), cache)) as (_, _, stub):
            again = score(stub, inst)
    assert first.usage.requests == len(MASKS) and again.usage.cache_hits == len(MASKS)
    assert again.values == first.values


def test_a_key_and_url_credentials_together_are_refused():
    with pytest.raises(ValueError, match="HTTP Basic auth in place of the API key") as info:
        EndpointConfig(f"http://user:{PASSWORD}@127.0.0.1:9/v1", "m", KEY)
    assert_absent((PASSWORD, KEY), str(info.value))


def test_the_cli_start_up_line_shows_the_url_without_its_password(tmp_path):
    inst = instance()
    with simulator(inst, basic=("user", PASSWORD)) as sim, \
            cli_adapter(url_with(sim, f"user:{PASSWORD}"), tmp_path / "c.sqlite", None) as run, \
            grpc.insecure_channel(run["address"]) as channel:
        reply = score(scorer_pb2_grpc.ScorerStub(channel), inst)
    assert reply.usage.requests == len(MASKS)
    assert f"(sim-vlm at {sim.base_url})" in run["line"]
    assert_absent((PASSWORD, basic("user", PASSWORD)), run["out"], run["err"])
