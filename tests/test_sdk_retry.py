"""The SDK retries a refusal that carries google.rpc.RetryInfo, and nothing else.

A small real gRPC server refuses the first calls with RESOURCE_EXHAUSTED (a rich status, with
or without RetryInfo), then hands the call to a real explainer: it tests how the SDK handles a
status, not our contract.
"""

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Optional

import grpc
import numpy as np
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from images import png
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.client import AsyncExplainerClient, ExplainerClient, ExplainerError
from multishap.client.sdk import MAX_RETRY_DELAY, CallRetries
from multishap.service.math.attributions import random_scores
from multishap.service.math.faithfulness import synergistic_faithfulness
from multishap.service.math.games import make_game
from multishap.v1 import explainer_pb2_grpc
from servers import TEXT, adapters, explainer

PARAMS = {"family": "mixed", "seed": "1"}


class Refusing(explainer_pb2_grpc.ExplainerServicer):
    """Refuses the first ``refusals`` calls (with RetryInfo when ``delay`` is set), then delegates them upstream."""

    def __init__(self, upstream, refusals: int, delay: Optional[float]) -> None:
        self.upstream, self.refusals, self.delay = upstream, refusals, delay
        self.calls = 0
        self._lock = threading.Lock()

    def _maybe_refuse(self, context) -> None:
        with self._lock:
            self.calls += 1
            refuse = self.calls <= self.refusals
        if refuse:
            status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message="all explanation slots are busy")
            if self.delay is not None:
                info = error_details_pb2.RetryInfo()
                info.retry_delay.FromTimedelta(timedelta(seconds=self.delay))
                detail = any_pb2.Any()
                detail.Pack(info)
                status.details.append(detail)
            context.abort_with_status(rpc_status.to_status(status))

    def Explain(self, request, context):
        self._maybe_refuse(context)
        yield from self.upstream.Explain(request)

    def Faithfulness(self, request, context):
        self._maybe_refuse(context)
        yield from self.upstream.Faithfulness(request)


@pytest.fixture(scope="module")
def upstream():
    with adapters(SyntheticBackend()) as (a,), explainer({"syn": [a.address]}) as (_, stub, _):
        yield stub


@contextmanager
def refusing(upstream, refusals: int, delay: Optional[float]):
    servicer = Refusing(upstream, refusals, delay)
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    explainer_pb2_grpc.add_ExplainerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(None)


def explain_args() -> dict:
    return dict(target="syn", grid=(2, 2), parameters=PARAMS, budget=300)


def test_a_refusal_with_retry_info_is_retried(upstream):
    with refusing(upstream, 2, 0.05) as (address, servicer), ExplainerClient(address, timeout=30) as client:
        start = time.monotonic()
        exp = client.explain(png(), TEXT, **explain_args())
        assert servicer.calls == 3 and time.monotonic() - start >= 0.1
    with refusing(upstream, 0, None) as (address, _), ExplainerClient(address, timeout=30) as client:
        assert np.array_equal(exp.phi, client.explain(png(), TEXT, **explain_args()).phi)


def test_faithfulness_is_retried_too(upstream):
    with refusing(upstream, 1, 0.01) as (address, servicer), ExplainerClient(address, timeout=30) as client:
        report = client.faithfulness(png(), TEXT, explainer="random", **explain_args())
    m, n = 4, len(TEXT.split())
    a, b = random_scores(m, n, 0)
    expected = synergistic_faithfulness(make_game(PARAMS["family"], m, n, int(PARAMS["seed"])), m, n, a, b)
    assert servicer.calls == 2 and report.f_syn == expected.f_syn and report.patch_scores.tolist() == a.tolist()


def test_a_refusal_without_retry_info_is_not_retried(upstream):
    with refusing(upstream, 1, None) as (address, servicer), ExplainerClient(address, timeout=30) as client:
        with pytest.raises(ExplainerError) as err:
            client.explain(png(), TEXT, **explain_args())
    assert servicer.calls == 1 and err.value.code == "RESOURCE_EXHAUSTED" and err.value.retry_after is None


def test_max_retries_bounds_the_retries(upstream):
    with refusing(upstream, 10, 0.01) as (address, servicer), ExplainerClient(address, max_retries=2) as client:
        with pytest.raises(ExplainerError) as err:
            client.explain(png(), TEXT, **explain_args())
    assert servicer.calls == 3 and err.value.retry_after == pytest.approx(0.01)


def test_a_delay_past_the_timeout_raises_at_once(upstream):
    with refusing(upstream, 1, 5.0) as (address, servicer), ExplainerClient(address) as client:
        start = time.monotonic()
        with pytest.raises(ExplainerError) as err:
            client.explain(png(), TEXT, timeout=1.0, **explain_args())
    assert servicer.calls == 1 and time.monotonic() - start < 1.0 and err.value.retry_after == pytest.approx(5.0)


def test_the_delay_is_capped():
    refusal = ExplainerError("RESOURCE_EXHAUSTED", "busy", retry_after=600.0)
    assert CallRetries(None, 3).delay_after(refusal) == MAX_RETRY_DELAY == 30.0


def test_the_async_client_retries_the_same_way(upstream):
    async def explain(address: str, **options):
        async with AsyncExplainerClient(address, timeout=30, **options) as client:
            return await client.explain(png(), TEXT, **explain_args())

    with refusing(upstream, 2, 0.05) as (address, servicer):
        exp = asyncio.run(explain(address))
        assert servicer.calls == 3 and exp.phi.shape == (4, len(TEXT.split()))
    with refusing(upstream, 1, None) as (address, servicer):
        with pytest.raises(ExplainerError, match="RESOURCE_EXHAUSTED"):
            asyncio.run(explain(address))
        assert servicer.calls == 1
    with refusing(upstream, 10, 0.01) as (address, servicer):
        with pytest.raises(ExplainerError):
            asyncio.run(explain(address, max_retries=1))
        assert servicer.calls == 2
