"""A seeded, bounded fuzz run: hundreds of malformed requests of every kind, mixed with valid
ones, against an explainer and a synthetic adapter running as their own processes.

Every malformed request must get the documented class of status with a short sentence;
the valid ones must succeed; no server dies, and a repeated pass does not grow their RSS.
"""

import io
import random

import grpc
import numpy as np
import pytest
from PIL import Image

from images import png
from multishap.service.rpc.wire import pack_coalitions
from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc, scorer_pb2, scorer_pb2_grpc
from servers import cli_process, free_port, instance, rss_bytes, wait_serving

IA, RE, NF = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.NOT_FOUND)
# Garbage bytes can decode as a request with random fields: any refusal of input is right.
INPUT_REFUSALS = {IA, RE, NF}
MAX_DETAILS = 400
RSS_GROWTH = 16 * 1024 * 1024


def _bytes(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


BOMB = _bytes(Image.new("1", (6000, 6000)), "PNG")
EPS = _bytes(Image.new("RGB", (32, 24)), "EPS")


def _text(rng: random.Random, size: int) -> str:
    return "".join(rng.choice("abcdefghij \n\t…é\x00") for _ in range(size))


def _instance_cases(rng: random.Random):
    """(instance, expected code) pairs, each instance broken in one way."""
    yield instance(text=""), IA
    yield instance(text=" \n\t "), IA
    yield instance(text="x" * rng.randint(4097, 20_000)), RE
    yield instance(text="a " * rng.randint(129, 1500)), RE
    yield instance(target="y" * 5000), RE
    yield instance(grid=common_pb2.Grid(rows=0, cols=rng.randint(0, 5))), IA
    yield instance(grid=common_pb2.Grid(rows=rng.randint(33, 2**32 - 1), cols=3)), RE
    yield instance(grid=common_pb2.Grid(rows=17, cols=17)), RE
    yield instance(grid=common_pb2.Grid(rows=30, cols=3)), IA       # taller than the 32x24 image: the adapter's
    yield instance(image=b""), IA
    yield instance(image=bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))), IA
    yield instance(image=png()[: rng.randint(8, 60)]), IA
    yield instance(image=BOMB), RE
    yield instance(image=EPS), IA
    yield instance(masking=common_pb2.MaskingOptions(image_baseline=rng.randint(4, 1000))), IA
    yield instance(masking=common_pb2.MaskingOptions(blur_radius=rng.choice([float("nan"), -1.0, 1e9]))), IA
    yield instance(masking=common_pb2.MaskingOptions(text_mask="m" * 100)), IA
    yield instance(parameters={"family": "mixed", _text(rng, 6) + "_": "1"}), IA
    yield instance(parameters={str(k): "1" for k in range(17)}), RE
    yield instance(parameters={"family": _text(rng, rng.randint(1, 300))}), IA
    yield instance(parameters={"family": "mixed", "seed": rng.choice(["-1", "x", "1.5", "²"])}), IA


def _explain_cases(rng: random.Random):
    for inst, code in _instance_cases(rng):
        yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=inst, budget=300), code
    yield "explain", explainer_pb2.ExplainRequest(target=_text(rng, rng.randint(1, 100_000)), instance=instance()), NF
    yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=instance(), method=_text(rng, 50) + "!"), IA
    yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=instance(), index="shapley"), IA
    yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=instance(), budget=rng.randint(200_001, 2**64 - 1)), RE
    yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="multishap", budget=5), IA
    yield "explain", explainer_pb2.ExplainRequest(target="syn", instance=instance(), method="exact", budget=100), IA


def _faithfulness_cases(rng: random.Random):
    def request(**fields):
        fields.setdefault("instance", instance())
        return explainer_pb2.FaithfulnessRequest(target="syn", budget=300, **fields)

    yield "faithfulness", request(steps=rng.randint(101, 2**32 - 1)), RE
    yield "faithfulness", request(macro_game=True, chunks=rng.randint(11, 2**32 - 1)), RE
    yield "faithfulness", request(eps=rng.choice([float("nan"), float("inf"), -rng.random()])), IA
    yield "faithfulness", request(explainer=_text(rng, 20) + "?"), IA
    yield "faithfulness", request(patch_scores=[1.0] * rng.randint(1, 8), token_scores=[1.0] * 6), IA
    yield "faithfulness", request(patch_scores=[float("inf")] * 9, token_scores=[1.0] * 6), IA
    inst, code = rng.choice(list(_instance_cases(rng)))
    yield "faithfulness", request(instance=inst), code


def _scorer_cases(rng: random.Random):
    masks = np.ones((3, 15), dtype=bool)
    good = dict(instance=instance(), num_players=15, num_coalitions=3, coalitions=pack_coalitions(masks))
    yield "score", scorer_pb2.ScoreRequest(**{**good, "num_players": rng.randint(16, 5000)}), IA
    yield "score", scorer_pb2.ScoreRequest(**{**good, "num_coalitions": rng.randint(4, 200_000)}), IA
    yield "score", scorer_pb2.ScoreRequest(**{**good, "num_coalitions": rng.randint(200_001, 2**32 - 1)}), RE
    yield "score", scorer_pb2.ScoreRequest(**{**good, "num_coalitions": 0, "coalitions": b""}), IA
    yield "score", scorer_pb2.ScoreRequest(**{**good, "coalitions": b"\x00"}), IA
    many = rng.randint(200_001, 300_000)
    yield "score", scorer_pb2.ScoreRequest(**{**good, "num_coalitions": many, "coalitions": b"\xff\xfe" * many}), RE
    inst, code = rng.choice(list(_instance_cases(rng)))
    yield "score", scorer_pb2.ScoreRequest(**{**good, "instance": inst}), code


def _garbage_cases(rng: random.Random):
    valid = explainer_pb2.ExplainRequest(target="syn", instance=instance(), budget=300).SerializeToString()
    for method in ("explain-raw", "faithfulness-raw", "score-raw"):
        yield method, bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))), INPUT_REFUSALS
        yield method, valid[: rng.randint(1, len(valid) - 1)], INPUT_REFUSALS


def malformed_requests(seed: int, rounds: int):
    rng = random.Random(seed)
    for _ in range(rounds):
        for generate in (_explain_cases, _faithfulness_cases, _scorer_cases, _garbage_cases):
            yield from generate(rng)


class Clients:
    """Stubs (and raw byte callers) for the explainer and the adapter."""

    def __init__(self, explainer_address: str, adapter_address: str) -> None:
        self.channels = [grpc.insecure_channel(explainer_address), grpc.insecure_channel(adapter_address)]
        ex, ad = self.channels
        self.explainer = explainer_pb2_grpc.ExplainerStub(ex)
        self.scorer = scorer_pb2_grpc.ScorerStub(ad)
        raw = dict(request_serializer=lambda b: b, response_deserializer=lambda b: b)
        self.raw = {
            "explain-raw": ex.unary_stream("/multishap.v1.Explainer/Explain", **raw),
            "faithfulness-raw": ex.unary_stream("/multishap.v1.Explainer/Faithfulness", **raw),
            "score-raw": ad.unary_unary("/multishap.v1.Scorer/Score", **raw),
        }

    def send(self, kind: str, request) -> None:
        if kind == "explain":
            list(self.explainer.Explain(request, timeout=30))
        elif kind == "faithfulness":
            list(self.explainer.Faithfulness(request, timeout=30))
        elif kind == "score":
            self.scorer.Score(request, timeout=30)
        elif kind == "score-raw":
            self.raw[kind](request, timeout=30)
        else:
            list(self.raw[kind](request, timeout=30))

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


def one_pass(clients: Clients, seed: int) -> int:
    """Send the malformed requests of ``seed`` with a valid one every tenth; return how many were malformed."""
    count = 0
    for k, (kind, request, expected) in enumerate(malformed_requests(seed, rounds=6)):
        with pytest.raises(grpc.RpcError) as err:
            clients.send(kind, request)
        code, details = err.value.code(), err.value.details() or ""
        allowed = expected if isinstance(expected, set) else {expected}
        assert code in allowed, f"{kind} case {k}: {code.name} {details[:200]!r}, expected {allowed}"
        assert 0 < len(details) <= MAX_DETAILS, f"{kind} case {k}: {len(details)} characters"
        count += 1
        if k % 10 == 0:
            valid = explainer_pb2.ExplainRequest(target="syn", instance=instance(seed=str(k)), budget=200, seed=k)
            assert list(clients.explainer.Explain(valid, timeout=30))[-1].explanation.evaluations <= 200
    return count


@pytest.mark.slow
def test_malformed_requests_get_documented_statuses_and_servers_stay_up(tmp_path):
    adapter_port, port = free_port(), free_port()
    log = (tmp_path / "servers.log").open("w")
    adapter = cli_process("adapter", "synthetic", "--port", str(adapter_port), "--metrics-port", "-1", log=log)
    server = cli_process("serve", "--port", str(port), "--metrics-port", "-1", log=log,
                         env={"MULTISHAP_TARGETS": f"syn=127.0.0.1:{adapter_port}"})
    clients = None
    try:
        wait_serving(f"127.0.0.1:{adapter_port}", adapter)
        wait_serving(f"127.0.0.1:{port}", server)
        clients = Clients(f"127.0.0.1:{port}", f"127.0.0.1:{adapter_port}")
        first = one_pass(clients, seed=0)
        after_first = {p.pid: rss_bytes(p.pid) for p in (adapter, server)}
        second = one_pass(clients, seed=0)
        after_second = {p.pid: rss_bytes(p.pid) for p in (adapter, server)}
        assert first + second >= 500
        for pid, before in after_first.items():
            assert after_second[pid] - before <= RSS_GROWTH, f"process {pid} grew by {after_second[pid] - before} bytes"
        assert adapter.poll() is None and server.poll() is None
    finally:
        if clients is not None:
            clients.close()
        for proc in (server, adapter):
            proc.kill()
            proc.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "servers.log").read_text()
