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
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

import grpc

from multishap.service import defaults
from multishap.service.math.attributions import BUILT_IN_EXPLAINERS
from multishap.service.rpc.tls import ClientTLS, TLSArg, client_tls, open_aio_channel, open_channel
from multishap.v1 import explainer_pb2, explainer_pb2_grpc, jobs_pb2, jobs_pb2_grpc

from .calls import CallRetries, Exchange
from .dataset import (CONCURRENCY, PHI_OPTIONS, RESULTS_FILE, DatasetReport, ResultsFile, dataset_run,
                      explain_options, instance_id, row_key)
from .errors import ExplainerError
from .explanation import Explanation, FaithfulnessReport, Target
from .jobs import (AsyncJobHandle, JobHandle, JobListing, JobStatus, dataset_request, explain_job_request,
                   faithfulness_job_request)
from .progress import ProgressArg, ProgressUpdate
from .requests import BASELINES, Call, call_options, explain_call, faithfulness_call, targets_from_proto
from .comparison import ComparisonReport, comparison_run
from .stability_call import stability_call

if TYPE_CHECKING:
    from multishap.service.audit import StabilityResult

    from .audit import AuditReport

DEFAULT_BUDGET = defaults.SERVER_BUDGET  # 0 asks for the server's configured default ([limits] default_budget)
DEFAULT_MAX_RETRIES = defaults.MAX_RETRIES
MAX_RETRY_DELAY = defaults.MAX_RETRY_DELAY_S  # seconds; a longer RetryInfo delay is shortened to this

__all__ = [
    "BASELINES", "DEFAULT_BUDGET", "DEFAULT_MAX_RETRIES", "MAX_RETRY_DELAY", "PHI_OPTIONS", "AsyncExplainerClient",
    "CallRetries", "ClientTLS", "DatasetReport", "ExplainerClient", "ExplainerError", "ProgressArg", "ProgressUpdate",
    "ResultsFile", "explain_options", "instance_id", "row_key",
]


class _Client:
    """What both clients hold: the address, the default timeout, the retry bound, a channel and its stub."""

    def __init__(self, channel: Any, address: str, timeout: Optional[float], max_retries: int, tls: Any = None,
                 token: Optional[str] = None) -> None:
        self.address, self.timeout, self.max_retries = address, timeout, max_retries
        self._security = {"tls": tls, "token": token}   # what an audit's workers open their own clients with
        self._channel = channel
        self._stub = explainer_pb2_grpc.ExplainerStub(channel)
        self._jobs = jobs_pb2_grpc.JobsStub(channel)

    def _exchange(self, call: Call) -> Exchange:
        return Exchange(call, self.timeout, self.max_retries)

    def _audit_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """run_audit()'s options: this client's timeout, retries, TLS and token unless ``options`` say otherwise."""
        return {"timeout": self.timeout, "max_retries": self.max_retries, **self._security, **options}

    def _open(self, exchange: Exchange) -> Any:
        """Start one attempt of the exchange's call: its stream of events."""
        return getattr(self._stub, exchange.call.rpc)(exchange.call.request, timeout=exchange.timeout())


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]


class ExplainerClient(_Client):
    """Blocking client of the Explainer service; ``max_retries`` bounds the retries of a refusal with RetryInfo."""

    def __init__(self, address: str, timeout: Optional[float] = None,
                 max_message_bytes: int = defaults.MAX_MESSAGE_BYTES, max_retries: int = DEFAULT_MAX_RETRIES,
                 tls: TLSArg = None, token: Optional[str] = None) -> None:
        """``tls``: None for plaintext, True for TLS checked against the system's roots, or a ClientTLS (CA,
        client certificate for mutual TLS, server name); ``token``: a bearer token sent with every call,
        only over TLS or to a loopback address (ValueError otherwise)."""
        tls = client_tls(tls)
        super().__init__(open_channel(address, tls, token, _channel_options(max_message_bytes)), address,
                         timeout, max_retries, tls, token)

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

    @call_options(stability_call, "StabilityResult")
    def stability(self, *args: Any, **options: Any) -> "StabilityResult":
        return stability_call(*args, **options).run(self.explain)

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

    def compare_explainers(self, records: Iterable[Mapping[str, Any]], *, target: str,
                           explainers: Sequence[str] = BUILT_IN_EXPLAINERS, concurrency: int = CONCURRENCY,
                           **options: Any) -> ComparisonReport:
        """Rank explainers by F_syn over ``records``, ``concurrency`` Faithfulness calls at once (see
        :func:`multishap.client.comparison.comparison_run` for what is scored and compared)."""
        run = comparison_run(records, target=target, explainers=explainers, **options)
        run.with_threads(self.faithfulness, concurrency)
        return run.report()

    def audit(self, instances: Iterable[Mapping[str, Any]], *, targets: Sequence[str], engine: str = "local",
              out: Union[str, Path] = "audit.parquet", **options: Any) -> "AuditReport":
        """Explain every instance at every target of ``targets`` on this client's explainer, on threads
        (``engine="local"``) or as Ray tasks (``"ray"``), into the resumable Parquet directory ``out``; per-target
        MSR and SDR. ``options`` are :func:`multishap.client.audit.run_audit`'s (concurrency, bounds, sinks,
        ray_address, job_store, explain() options); each worker opens its own client to this client's address
        with this client's timeout, retries, TLS and token."""
        from .audit import run_audit

        return run_audit(instances, address=self.address, targets=targets, engine=engine, out=out,
                         **self._audit_options(options))

    def submit_dataset(self, instances: Iterable[Mapping[str, Any]], *, target: str, name: str = "",
                       **options: Any) -> JobHandle:
        """Store a dataset audit as a server-side job and return at once; the explainer's replicas run it even when
        this process ends. ``instances`` and ``options`` are :meth:`explain_dataset`'s."""
        return self._submit(jobs_pb2.SubmitJobRequest(dataset=dataset_request(instances, target, options), name=name))

    @call_options(explain_call, "JobHandle")
    def submit_explain(self, *args: Any, **options: Any) -> JobHandle:
        return self._submit(explain_job_request(*args, **options))

    @call_options(faithfulness_call, "JobHandle")
    def submit_faithfulness(self, *args: Any, **options: Any) -> JobHandle:
        return self._submit(faithfulness_job_request(*args, **options))

    def job(self, job_id: str) -> JobHandle:
        """The stored job ``job_id`` (submitted by anyone with this identity, from anywhere)."""
        return JobHandle(self._jobs, job_id, self.timeout)

    def jobs(self, state: Optional[str] = None, limit: int = 100) -> list[JobStatus]:
        """Stored jobs, newest first, at most ``limit``, of one state ("queued", "running", "succeeded", "failed",
        "cancelled") when given."""
        listing = JobListing(state, limit)
        while listing.wants_more():
            try:
                listing.receive(self._jobs.ListJobs(listing.request, timeout=self.timeout))
            except grpc.RpcError as err:
                raise ExplainerError.from_rpc(err) from None
        return listing.found[:limit]

    def _submit(self, request: Any) -> JobHandle:
        try:
            job = self._jobs.SubmitJob(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        return JobHandle(self._jobs, job.id, self.timeout)

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
                 max_message_bytes: int = defaults.MAX_MESSAGE_BYTES, max_retries: int = DEFAULT_MAX_RETRIES,
                 tls: TLSArg = None, token: Optional[str] = None) -> None:
        """``tls`` and ``token`` as for :class:`ExplainerClient`."""
        tls = client_tls(tls)
        super().__init__(open_aio_channel(address, tls, token, _channel_options(max_message_bytes)), address,
                         timeout, max_retries, tls, token)

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

    @call_options(stability_call, "StabilityResult")
    async def stability(self, *args: Any, **options: Any) -> "StabilityResult":
        plan = stability_call(*args, **options)
        loop = asyncio.get_running_loop()

        def explain(*call_args: Any, **call_options_: Any) -> Explanation:
            return asyncio.run_coroutine_threadsafe(self.explain(*call_args, **call_options_), loop).result()

        return await asyncio.to_thread(plan.run, explain)

    async def explain_dataset(self, instances: Iterable[Mapping[str, Any]], *, target: str,
                              concurrency: int = CONCURRENCY, out: Union[str, Path] = RESULTS_FILE,
                              progress: bool = True, **options: Any) -> DatasetReport:
        """Explain many instances into ``out``, resuming what it holds (see :meth:`ExplainerClient.explain_dataset`;
        the same file format), with ``concurrency`` calls in flight."""
        with dataset_run(instances, target, Path(out), progress, options) as run:
            await run.with_tasks(self.explain, concurrency)
        return run.report()

    async def compare_explainers(self, records: Iterable[Mapping[str, Any]], *, target: str,
                                 explainers: Sequence[str] = BUILT_IN_EXPLAINERS, concurrency: int = CONCURRENCY,
                                 **options: Any) -> ComparisonReport:
        """:meth:`ExplainerClient.compare_explainers`, with ``concurrency`` calls in flight."""
        run = comparison_run(records, target=target, explainers=explainers, **options)
        await run.with_tasks(self.faithfulness, concurrency)
        return run.report()

    async def audit(self, instances: Iterable[Mapping[str, Any]], *, targets: Sequence[str], engine: str = "local",
                    out: Union[str, Path] = "audit.parquet", **options: Any) -> "AuditReport":
        """:meth:`ExplainerClient.audit`, run in a worker thread (its engines run their own clients)."""
        from .audit import run_audit

        return await asyncio.to_thread(run_audit, list(instances), address=self.address, targets=targets,
                                       engine=engine, out=out, **self._audit_options(options))

    async def submit_dataset(self, instances: Iterable[Mapping[str, Any]], *, target: str, name: str = "",
                             **options: Any) -> AsyncJobHandle:
        """:meth:`ExplainerClient.submit_dataset`; the handle's methods are awaited."""
        return await self._submit(jobs_pb2.SubmitJobRequest(dataset=dataset_request(instances, target, options),
                                                            name=name))

    @call_options(explain_call, "AsyncJobHandle")
    async def submit_explain(self, *args: Any, **options: Any) -> AsyncJobHandle:
        return await self._submit(explain_job_request(*args, **options))

    @call_options(faithfulness_call, "AsyncJobHandle")
    async def submit_faithfulness(self, *args: Any, **options: Any) -> AsyncJobHandle:
        return await self._submit(faithfulness_job_request(*args, **options))

    async def job(self, job_id: str) -> AsyncJobHandle:
        """The stored job ``job_id`` (see :meth:`ExplainerClient.job`); its handle's methods are awaited."""
        return AsyncJobHandle(self._jobs, job_id, self.timeout)

    async def jobs(self, state: Optional[str] = None, limit: int = 100) -> list[JobStatus]:
        """Stored jobs, newest first (see :meth:`ExplainerClient.jobs`)."""
        listing = JobListing(state, limit)
        while listing.wants_more():
            try:
                listing.receive(await self._jobs.ListJobs(listing.request, timeout=self.timeout))
            except grpc.RpcError as err:
                raise ExplainerError.from_rpc(err) from None
        return listing.found[:limit]

    async def _submit(self, request: Any) -> AsyncJobHandle:
        try:
            job = await self._jobs.SubmitJob(request, timeout=self.timeout)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        return AsyncJobHandle(self._jobs, job.id, self.timeout)

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
