"""The Python SDK: ExplainerClient (blocking) and AsyncExplainerClient (asyncio), the same calls over one
request layer (:mod:`.requests`, :mod:`.calls`, :mod:`.dataset`); the clients differ only in their transport.

    from multishap.client import ExplainerClient
    with ExplainerClient("127.0.0.1:50050") as client:
        exp = client.explain("cat.png", "a cat on a couch", target="clip", grid=(7, 7), progress=True)
        exp.phi, exp.tokens, exp.metrics.synergy_ratio, exp.plot()

Errors from the service arrive as subclasses of :class:`ExplainerError`, one per status code, with the code's
name and the server's sentence. A refusal that carries a ``google.rpc.RetryInfo`` (the server is busy) is
retried after the delay it asks for, at most ``max_retries`` times and never past the call's timeout.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

import grpc

from multishap.service import defaults
from multishap.v1 import explainer_pb2, explainer_pb2_grpc

from .calls import CallRetries, Exchange
from .dataset import (CONCURRENCY, PHI_OPTIONS, RESULTS_FILE, DatasetReport, ResultsFile, dataset_run,
                      explain_options, instance_id, row_key)
from .errors import ExplainerError
from .explanation import Explanation, FaithfulnessReport, Target
from .progress import ProgressArg, ProgressUpdate
from .requests import BASELINES, Call, call_options, explain_call, faithfulness_call, targets_from_proto

DEFAULT_BUDGET = defaults.SERVER_BUDGET  # 0 asks for the server's configured default ([limits] default_budget)
DEFAULT_MAX_RETRIES = defaults.MAX_RETRIES
MAX_RETRY_DELAY = defaults.MAX_RETRY_DELAY_S  # seconds; a longer RetryInfo delay is shortened to this

__all__ = [
    "BASELINES", "DEFAULT_BUDGET", "DEFAULT_MAX_RETRIES", "MAX_RETRY_DELAY", "PHI_OPTIONS", "AsyncExplainerClient",
    "CallRetries", "DatasetReport", "ExplainerClient", "ExplainerError", "ProgressArg", "ProgressUpdate",
    "ResultsFile", "explain_options", "instance_id", "row_key",
]


class _Client:
    """What both clients hold: the address, the default timeout, the retry bound, a channel and its stub."""

    def __init__(self, channel: Any, address: str, timeout: Optional[float], max_retries: int) -> None:
        self.address, self.timeout, self.max_retries = address, timeout, max_retries
        self._channel = channel
        self._stub = explainer_pb2_grpc.ExplainerStub(channel)

    def _exchange(self, call: Call) -> Exchange:
        return Exchange(call, self.timeout, self.max_retries)

    def _open(self, exchange: Exchange) -> Any:
        """Start one attempt of the exchange's call: its stream of events."""
        return getattr(self._stub, exchange.call.rpc)(exchange.call.request, timeout=exchange.timeout())


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]


class ExplainerClient(_Client):
    """Blocking client of the Explainer service; ``max_retries`` bounds the retries of a refusal with RetryInfo."""

    def __init__(self, address: str, timeout: Optional[float] = None,
                 max_message_bytes: int = defaults.MAX_MESSAGE_BYTES, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        super().__init__(grpc.insecure_channel(address, options=_channel_options(max_message_bytes)), address,
                         timeout, max_retries)

    def __enter__(self) -> "ExplainerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def targets(self) -> list[Target]:
        """The targets the service can explain, and whether each is reachable."""
        try:
            return targets_from_proto(self._stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=self.timeout))
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None

    @call_options(explain_call, "Explanation")
    def explain(self, *args: Any, **options: Any) -> Explanation:
        return self._run(explain_call(*args, **options))

    @call_options(faithfulness_call, "FaithfulnessReport")
    def faithfulness(self, *args: Any, **options: Any) -> FaithfulnessReport:
        return self._run(faithfulness_call(*args, **options))

    def explain_dataset(self, instances: Iterable[Mapping[str, Any]], *, target: str, concurrency: int = CONCURRENCY,
                        out: Union[str, Path] = RESULTS_FILE, progress: bool = True, **options: Any) -> DatasetReport:
        """Explain many instances, appending each result to ``out`` (JSON lines) as it finishes.

        A row in ``out`` is reused only when it was made for the same instance (id, text, answer,
        image content) with the same target and Phi-changing options (grid, method, index,
        budget, seed, masking, parameters); anything else is redone, so an interrupted run resumes
        and a changed request is never answered from an old one. Each instance is a mapping with
        ``image``, ``text``, optional ``answer``, ``grid``, ``parameters`` and ``id`` (default: a
        hash of the rest); ``options`` go to explain(). One run at a time may use an ``out`` file.
        ``progress`` draws a bar over the instances.
        """
        with dataset_run(instances, target, Path(out), progress, options) as run:
            run.with_threads(self.explain, concurrency)
        return run.report()

    def _run(self, call: Call) -> Any:
        """The call's result, after retrying each refusal the server asks to retry."""
        with self._exchange(call) as exchange:
            while True:
                try:
                    for event in self._open(exchange):
                        if exchange.receive(event):
                            break
                    return exchange.result()
                except grpc.RpcError as err:
                    time.sleep(exchange.retry_delay(err))


class AsyncExplainerClient(_Client):
    """asyncio client of the Explainer service: ExplainerClient's methods, awaited."""

    def __init__(self, address: str, timeout: Optional[float] = None,
                 max_message_bytes: int = defaults.MAX_MESSAGE_BYTES, max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        super().__init__(grpc.aio.insecure_channel(address, options=_channel_options(max_message_bytes)), address,
                         timeout, max_retries)

    async def __aenter__(self) -> "AsyncExplainerClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def targets(self) -> list[Target]:
        """The targets the service can explain, and whether each is reachable."""
        try:
            reply = await self._stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=self.timeout)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        return targets_from_proto(reply)

    @call_options(explain_call, "Explanation")
    async def explain(self, *args: Any, **options: Any) -> Explanation:
        return await self._run(explain_call(*args, **options))

    @call_options(faithfulness_call, "FaithfulnessReport")
    async def faithfulness(self, *args: Any, **options: Any) -> FaithfulnessReport:
        return await self._run(faithfulness_call(*args, **options))

    async def explain_dataset(self, instances: Iterable[Mapping[str, Any]], *, target: str,
                              concurrency: int = CONCURRENCY, out: Union[str, Path] = RESULTS_FILE,
                              progress: bool = True, **options: Any) -> DatasetReport:
        """Explain many instances into ``out``, resuming what it holds (see :meth:`ExplainerClient.explain_dataset`;
        the same file format), with ``concurrency`` calls in flight."""
        with dataset_run(instances, target, Path(out), progress, options) as run:
            await run.with_tasks(self.explain, concurrency)
        return run.report()

    async def _run(self, call: Call) -> Any:
        """The call's result, after retrying each refusal the server asks to retry."""
        with self._exchange(call) as exchange:
            while True:
                try:
                    async for event in self._open(exchange):
                        if exchange.receive(event):
                            break
                    return exchange.result()
                except grpc.RpcError as err:
                    await asyncio.sleep(exchange.retry_delay(err))
