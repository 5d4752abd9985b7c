"""The Python SDK: ExplainerClient (blocking) and AsyncExplainerClient (asyncio).

    from multishap.client import ExplainerClient
    with ExplainerClient("127.0.0.1:50050") as client:
        exp = client.explain("cat.png", "a cat on a couch", target="clip", grid=(7, 7), progress=True)
        exp.phi, exp.tokens, exp.metrics.synergy_ratio, exp.plot()

Errors from the service arrive as :class:`ExplainerError` with the status code's name and
the server's sentence. A refusal that carries a ``google.rpc.RetryInfo`` (the server is busy)
is retried after the delay it asks for, at most ``max_retries`` times and never past the
call's timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from multishap.service.math.metrics import dataset_metrics
from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc

from .explanation import Explanation, FaithfulnessReport, Target, Usage
from .images import ImageLike, content_bytes, to_pil, to_png

DEFAULT_BUDGET = 0  # 0 asks for the server's configured default ([limits] default_budget)
DEFAULT_MAX_RETRIES = 3
MAX_RETRY_DELAY = 30.0  # seconds; a longer RetryInfo delay is shortened to this
BASELINES = {
    None: common_pb2.IMAGE_BASELINE_UNSPECIFIED,
    "zero": common_pb2.IMAGE_BASELINE_ZERO,
    "mean": common_pb2.IMAGE_BASELINE_MEAN,
    "blur": common_pb2.IMAGE_BASELINE_BLUR,
}


class ExplainerError(Exception):
    """An error status from the explainer: ``code`` (e.g. "NOT_FOUND"), ``details``, and
    ``retry_after``, the seconds the server asked the caller to wait before trying again (None: do not)."""

    def __init__(self, code: str, details: str, retry_after: Optional[float] = None) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details, self.retry_after = code, details, retry_after

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> "ExplainerError":
        return cls(err.code().name, err.details() or "", retry_delay(err))


def retry_delay(err: grpc.RpcError) -> Optional[float]:
    """The delay a ``google.rpc.RetryInfo`` in the error's rich status asks for; None when there is none."""
    try:
        status = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        return None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return max(info.retry_delay.ToTimedelta().total_seconds(), 0.0)
    return None


class CallRetries:
    """The retry decision both clients share for one call: which errors to retry, how long to wait,
    and what timeout each attempt gets so that all of them together stay within the caller's."""

    def __init__(self, timeout: Optional[float], max_retries: int) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.max_retries, self.retries = max_retries, 0

    def timeout(self) -> Optional[float]:
        """Seconds left for the next attempt (None: no deadline)."""
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def delay_after(self, err: ExplainerError) -> float:
        """Seconds to wait before retrying ``err``; raises ``err`` when it carries no RetryInfo, the retries
        are used up, or the wait would pass the deadline."""
        delay = None if err.retry_after is None else min(err.retry_after, MAX_RETRY_DELAY)
        left = self.timeout()
        if delay is None or self.retries >= self.max_retries or (left is not None and delay >= left):
            raise err
        self.retries += 1
        return delay


@dataclass(frozen=True)
class ProgressUpdate:
    evaluations: int
    budget: int
    elapsed_seconds: float
    eta_seconds: float


ProgressArg = Union[bool, Callable[[ProgressUpdate], None]]


class ProgressBar:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str = "explaining", stream=sys.stderr, width: int = 30) -> None:
        self.label, self.stream, self.width = label, stream, width

    def __call__(self, p: ProgressUpdate) -> None:
        share = min(p.evaluations / p.budget, 1.0) if p.budget else 0.0
        bar = "#" * int(share * self.width)
        self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {p.evaluations}/{p.budget} coalitions "
                          f"{p.elapsed_seconds:5.1f} s, ETA {p.eta_seconds:5.1f} s")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def build_instance(
    image: ImageLike,
    text: str,
    answer: str = "",
    grid: tuple[int, int] = (7, 7),
    parameters: Optional[Mapping[str, str]] = None,
    image_baseline: Optional[str] = None,
    blur_radius: float = 0.0,
    text_mask: str = "",
) -> common_pb2.Instance:
    """The Instance message for an image, a text and the answer being explained."""
    if image_baseline not in BASELINES:
        raise ValueError(f"image_baseline must be one of zero, mean, blur; got {image_baseline!r}")
    rows, cols = grid
    return common_pb2.Instance(
        image=to_png(image), text=text, target=answer, grid=common_pb2.Grid(rows=rows, cols=cols),
        masking=common_pb2.MaskingOptions(image_baseline=BASELINES[image_baseline], blur_radius=blur_radius,
                                          text_mask=text_mask),
        parameters={str(k): str(v) for k, v in (parameters or {}).items()},
    )


def explain_request(image: ImageLike, text: str, *, target: str, answer: str = "", grid: tuple[int, int] = (7, 7),
                    method: str = "auto", budget: int = DEFAULT_BUDGET, seed: int = 0, index: str = "SII",
                    parameters: Optional[Mapping[str, str]] = None, image_baseline: Optional[str] = None,
                    blur_radius: float = 0.0, text_mask: str = "",
                    dry_run: bool = False) -> explainer_pb2.ExplainRequest:
    """The ExplainRequest both clients send."""
    instance = build_instance(image, text, answer, grid, parameters, image_baseline, blur_radius, text_mask)
    return explainer_pb2.ExplainRequest(target=target, instance=instance, method=method, budget=budget, seed=seed,
                                        index=index, dry_run=dry_run)


def faithfulness_request(image: ImageLike, text: str, *, target: str, answer: str = "", grid: tuple[int, int] = (7, 7),
                         patch_scores: Optional[Sequence[float]] = None, token_scores: Optional[Sequence[float]] = None,
                         explainer: str = "multishap", steps: int = 10, eps: float = 0.05, macro_game: bool = False,
                         chunks: int = 6, seed: int = 0, budget: int = DEFAULT_BUDGET,
                         parameters: Optional[Mapping[str, str]] = None) -> explainer_pb2.FaithfulnessRequest:
    """The FaithfulnessRequest both clients send."""
    return explainer_pb2.FaithfulnessRequest(
        target=target, instance=build_instance(image, text, answer, grid, parameters),
        patch_scores=_scores(patch_scores, "patch_scores"), token_scores=_scores(token_scores, "token_scores"),
        explainer=explainer,
        steps=steps, eps=eps, macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
    )


def _scores(values: Optional[Sequence[float]], name: str) -> list[float]:
    """The scores as floats; ValueError naming ``name`` when one is not a number."""
    try:
        return [float(v) for v in values or []]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a list of numbers") from None


def _progress_callback(progress: ProgressArg, label: str) -> tuple[Optional[Callable], Callable[[], None]]:
    if progress is True:
        bar = ProgressBar(label)
        return bar, bar.close
    if callable(progress):
        return progress, lambda: None
    return None, lambda: None


def _update(p: explainer_pb2.Progress) -> ProgressUpdate:
    return ProgressUpdate(p.evaluations, p.budget, p.elapsed_seconds, p.eta_seconds)


def _targets(reply: explainer_pb2.ListTargetsResponse) -> list[Target]:
    return [Target(t.name, list(t.addresses), t.model_id, t.score_semantics, t.reachable) for t in reply.targets]


def _channel_options(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_send_message_length", max_message_bytes), ("grpc.max_receive_message_length", max_message_bytes)]


class ExplainerClient:
    """Blocking client of the Explainer service; ``max_retries`` bounds the retries of a refusal with RetryInfo."""

    def __init__(self, address: str, timeout: Optional[float] = None, max_message_bytes: int = 64 * 1024 * 1024,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.address, self.timeout, self.max_retries = address, timeout, max_retries
        self._channel = grpc.insecure_channel(address, options=_channel_options(max_message_bytes))
        self._stub = explainer_pb2_grpc.ExplainerStub(self._channel)

    def __enter__(self) -> "ExplainerClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def targets(self) -> list[Target]:
        """The targets the service can explain, and whether each is reachable."""
        try:
            return _targets(self._stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=self.timeout))
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None

    def _call(self, rpc, request, progress: ProgressArg, label: str, field_name: str, timeout: Optional[float]):
        """Run a streaming RPC to its result, retrying a refusal the server asks to retry."""
        callback, done = _progress_callback(progress, label)
        retries = CallRetries(timeout or self.timeout, self.max_retries)
        try:
            while True:
                try:
                    return self._stream(rpc(request, timeout=retries.timeout()), callback, field_name)
                except ExplainerError as err:
                    time.sleep(retries.delay_after(err))
        finally:
            done()

    @staticmethod
    def _stream(call, callback: Optional[Callable[[ProgressUpdate], None]], field_name: str):
        try:
            for event in call:
                if event.WhichOneof("event") == "progress":
                    if callback is not None:
                        callback(_update(event.progress))
                else:
                    return getattr(event, field_name)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        raise ExplainerError("INTERNAL", "the stream ended without a result")

    def explain(
        self,
        image: ImageLike,
        text: str,
        *,
        target: str,
        answer: str = "",
        grid: tuple[int, int] = (7, 7),
        method: str = "auto",
        budget: int = DEFAULT_BUDGET,
        seed: int = 0,
        index: str = "SII",
        parameters: Optional[Mapping[str, str]] = None,
        image_baseline: Optional[str] = None,
        blur_radius: float = 0.0,
        text_mask: str = "",
        dry_run: bool = False,
        progress: ProgressArg = False,
        timeout: Optional[float] = None,
    ) -> Explanation:
        """Explain one instance: Phi, metrics, cost and provenance (see :class:`Explanation`).

        ``budget`` 0 (the default) asks for the server's configured default. ``dry_run=True`` selects the coalitions without scoring them: ``phi`` is zeros,
        ``evaluations`` the coalitions the method would score and ``usage`` what the target
        estimates they would cost (requests not yet in its cache, tokens, money).
        """
        request = explain_request(image, text, target=target, answer=answer, grid=grid, method=method, budget=budget,
                                  seed=seed, index=index, parameters=parameters, image_baseline=image_baseline,
                                  blur_radius=blur_radius, text_mask=text_mask, dry_run=dry_run)
        result = self._call(self._stub.Explain, request, progress, "explaining", "explanation", timeout)
        return Explanation.from_proto(result, image=np.asarray(to_pil(image)))

    def faithfulness(
        self,
        image: ImageLike,
        text: str,
        *,
        target: str,
        answer: str = "",
        grid: tuple[int, int] = (7, 7),
        patch_scores: Optional[Sequence[float]] = None,
        token_scores: Optional[Sequence[float]] = None,
        explainer: str = "multishap",
        steps: int = 10,
        eps: float = 0.05,
        macro_game: bool = False,
        chunks: int = 6,
        seed: int = 0,
        budget: int = DEFAULT_BUDGET,
        parameters: Optional[Mapping[str, str]] = None,
        progress: ProgressArg = False,
        timeout: Optional[float] = None,
    ) -> FaithfulnessReport:
        """F_syn and unimodal metrics of given scores, or of a built-in explainer (``budget`` 0: the server's default)."""
        request = faithfulness_request(image, text, target=target, answer=answer, grid=grid, patch_scores=patch_scores,
                                       token_scores=token_scores, explainer=explainer, steps=steps, eps=eps,
                                       macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
                                       parameters=parameters)
        return FaithfulnessReport.from_proto(self._call(self._stub.Faithfulness, request, progress, "faithfulness",
                                                        "result", timeout))

    def explain_dataset(
        self,
        instances: Iterable[Mapping[str, Any]],
        *,
        target: str,
        concurrency: int = 4,
        out: Union[str, Path] = "results.jsonl",
        progress: bool = True,
        **options: Any,
    ) -> "DatasetReport":
        """Explain many instances, appending each result to ``out`` (JSON lines) as it finishes.

        A row in ``out`` is reused only when it was made for the same instance (id, text, answer,
        image content) with the same target and Phi-changing options (grid, method, index,
        budget, seed, masking, parameters); anything else is redone, so an interrupted run resumes
        and a changed request is never answered from an old one. Each instance is a mapping with
        ``image``, ``text``, optional ``answer``, ``grid``, ``parameters`` and ``id`` (default: a
        hash of the rest); ``options`` go to explain(). One run at a time may use an ``out`` file.
        """
        return run_dataset(self, instances, target, concurrency, Path(out), progress, options)


def instance_id(record: Mapping[str, Any]) -> str:
    """The record's ``id``, or a stable hash of its contents."""
    if "id" in record:
        return str(record["id"])
    digest = hashlib.sha256()
    for key in sorted(record):
        value = record[key]
        digest.update(key.encode())
        digest.update(value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


@dataclass
class DatasetReport:
    """MSR and SDR over the finished instances, with one row per instance."""

    msr: float
    sdr: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = Usage()  # summed over the instances in ``rows``, earlier runs included

    def table(self) -> str:
        lines = ["| id | synergy ratio | total | synergy | suppression | evaluations |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['id']} | {r['synergy_ratio']:.3f} | {r['total']:.4g} | {r['synergy']:.4g} | "
                         f"{r['suppression']:.4g} | {r['evaluations']} |")
        return "\n".join(lines)


# The explain() options that change Phi, with explain()'s defaults: a row is reused only when all match.
PHI_OPTIONS: dict[str, Any] = {"answer": "", "grid": (7, 7), "method": "auto", "budget": DEFAULT_BUDGET, "seed": 0,
                               "index": "SII", "parameters": None, "image_baseline": None, "blur_radius": 0.0,
                               "text_mask": "", "dry_run": False}


def explain_options(record: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The explain() keyword arguments for one dataset record: its answer, grid and parameters over ``options``."""
    merged = {**options, **{k: record[k] for k in ("answer", "grid", "parameters") if k in record}}
    if "grid" in merged:
        merged["grid"] = tuple(merged["grid"])
    return merged


def row_key(record: Mapping[str, Any], target: str, options: Mapping[str, Any]) -> str:
    """A digest of everything that changes Phi (target, text, image content, options), so that a resumed run
    reuses a row only when the same explanation is asked for again."""
    merged = {name: explain_options(record, options).get(name, default) for name, default in PHI_OPTIONS.items()}
    merged.update(
        target=target, text=record["text"], image=hashlib.sha256(content_bytes(record["image"])).hexdigest(),
        grid=[int(x) for x in merged["grid"]], budget=int(merged["budget"]), seed=int(merged["seed"]),
        blur_radius=float(merged["blur_radius"]),
        parameters={str(k): str(v) for k, v in (merged["parameters"] or {}).items()},
    )
    return hashlib.sha256(json.dumps(merged, sort_keys=True).encode()).hexdigest()[:32]


class ResultsFile:
    """The JSON-lines results of a dataset run, one line per (id, key); lines are only ever appended, and
    :meth:`compact` replaces the file whole.

    Reading, a later line for an (id, key) wins, except that a failure never replaces a success; a line
    that is not a JSON result (an interrupted write) is skipped with a warning, so its instance is redone.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[tuple[str, Optional[str]], dict[str, Any]] = {}
        self.lines = 0
        if path.exists():
            self._load(path.read_bytes())

    def _load(self, data: bytes) -> None:
        for n, raw in enumerate(data.split(b"\n"), 1):
            if not raw.strip():
                continue
            self.lines += 1
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            if not isinstance(row, dict) or "id" not in row or ("explanation" not in row and "error" not in row):
                warnings.warn(f"{self.path}:{n}: skipping a line that is not a JSON result (an interrupted write?); "
                              "its instance is redone")
                continue
            self._keep(row)
        if data and not data.endswith(b"\n"):
            with self.path.open("ab") as f:
                f.write(b"\n")

    def _keep(self, row: dict[str, Any]) -> None:
        slot = (str(row["id"]), row.get("key"))
        if "explanation" in row or "explanation" not in self.rows.get(slot, {}):
            self.rows[slot] = row

    def finished(self, row_id: str, key: str) -> Optional[dict[str, Any]]:
        """The successful row for this instance and key, if there is one."""
        row = self.rows.get((row_id, key))
        return row if row is not None and "explanation" in row else None

    def append(self, row: dict[str, Any]) -> None:
        """Add one line at the end, in one write, so an interrupted run keeps every row it finished."""
        with self.path.open("ab") as f:
            f.write((json.dumps(row) + "\n").encode())
        self.lines += 1
        self._keep(row)

    def compact(self) -> None:
        """Rewrite the file with one line per (id, key) through a temporary file and an atomic replace."""
        if self.lines == len(self.rows):
            return
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in self.rows.values())
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, stat.S_IMODE(self.path.stat().st_mode))
            os.replace(tmp, self.path)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            warnings.warn(f"could not rewrite {self.path} compactly ({err}); it keeps every line as written")
            return
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.lines = len(self.rows)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold ``path``.lock so two runs never append to, and rewrite, one results file at once
    (an advisory POSIX lock; where there is none, as on Windows, nothing is locked)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"{path} is in use by another run; wait for it or choose another out file") from None
        yield


def _dataset_row(row_id: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row_id, **row["explanation"]["metrics"], "evaluations": row["explanation"]["evaluations"]}


def run_dataset(client: ExplainerClient, instances: Iterable[Mapping[str, Any]], target: str, concurrency: int,
                out: Path, progress: bool, options: Mapping[str, Any]) -> DatasetReport:
    """Explain the instances ``out`` holds no result for (same instance, same options), appending each as it
    finishes, then compact ``out`` and report over all the instances asked for."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        results = ResultsFile(out)
        wanted, failed = _keys(instances, target, options, results)
        todo = {slot: record for slot, record in wanted.items() if results.finished(*slot) is None}
        skipped = len(wanted) - len(todo)
        _explain_all(client, todo, target, options, results, failed, concurrency, progress, skipped, len(wanted))
        results.compact()
    done = [(row_id, row) for row_id, key in wanted if (row := results.finished(row_id, key)) is not None]
    ratios = [row["explanation"]["metrics"]["synergy_ratio"] for _, row in done]
    dm = dataset_metrics(ratios) if ratios else None
    usages = [row["explanation"].get("usage", {}) for _, row in done]
    total = Usage(**{name: sum(u.get(name, 0) for u in usages) for name in Usage.__dataclass_fields__})
    return DatasetReport(msr=dm.msr if dm else float("nan"), sdr=dm.sdr if dm else float("nan"),
                         rows=[_dataset_row(row_id, row) for row_id, row in done], skipped=skipped, failed=failed,
                         usage=total)


def _keys(instances: Iterable[Mapping[str, Any]], target: str, options: Mapping[str, Any],
          results: ResultsFile) -> tuple[dict[tuple[str, str], Mapping[str, Any]], list[dict[str, str]]]:
    """Each instance under its (id, key); an instance whose image cannot be read fails here, and is written so."""
    wanted: dict[tuple[str, str], Mapping[str, Any]] = {}
    failed: list[dict[str, str]] = []
    for record in instances:
        row_id = instance_id(record)
        try:
            wanted[(row_id, row_key(record, target, options))] = record
        except ValueError as err:
            results.append({"id": row_id, "key": None, "error": str(err)})
            failed.append({"id": row_id, "error": str(err)})
    return wanted, failed


def _explain_all(client: ExplainerClient, todo: Mapping[tuple[str, str], Mapping[str, Any]], target: str,
                 options: Mapping[str, Any], results: ResultsFile,
                 failed: list[dict[str, str]], concurrency: int, progress: bool, skipped: int, total: int) -> None:
    """Explain ``todo`` on ``concurrency`` threads, appending each result (or error) to ``results``."""
    lock = threading.Lock()
    count = [0]

    def one(item) -> None:
        (row_id, key), record = item
        try:
            exp = client.explain(record["image"], record["text"], target=target, **explain_options(record, options))
            line = {"id": row_id, "key": key, "text": record["text"], "answer": record.get("answer", ""),
                    "explanation": exp.to_dict()}
        except (ExplainerError, ValueError) as err:
            line = {"id": row_id, "key": key, "error": str(err)}
        with lock:
            results.append(line)
            if "error" in line:
                failed.append({"id": row_id, "error": line["error"]})
            count[0] += 1
            if progress:
                sys.stderr.write(f"\r{count[0] + skipped}/{total} instances ({skipped} already done, "
                                 f"{len(failed)} failed)")
                sys.stderr.flush()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, todo.items()))
    if progress and todo:
        sys.stderr.write("\n")


class AsyncExplainerClient:
    """asyncio client of the Explainer service (same methods as ExplainerClient, awaited)."""

    def __init__(self, address: str, timeout: Optional[float] = None, max_message_bytes: int = 64 * 1024 * 1024,
                 max_retries: int = DEFAULT_MAX_RETRIES) -> None:
        self.address, self.timeout, self.max_retries = address, timeout, max_retries
        self._channel = grpc.aio.insecure_channel(address, options=_channel_options(max_message_bytes))
        self._stub = explainer_pb2_grpc.ExplainerStub(self._channel)

    async def __aenter__(self) -> "AsyncExplainerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def targets(self) -> list[Target]:
        try:
            return _targets(await self._stub.ListTargets(explainer_pb2.ListTargetsRequest(), timeout=self.timeout))
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None

    async def _call(self, rpc, request, progress: Optional[Callable[[ProgressUpdate], None]], field_name: str,
                    timeout: Optional[float]):
        """Run a streaming RPC to its result, retrying a refusal the server asks to retry."""
        retries = CallRetries(timeout or self.timeout, self.max_retries)
        while True:
            try:
                return await self._stream(rpc(request, timeout=retries.timeout()), progress, field_name)
            except ExplainerError as err:
                await asyncio.sleep(retries.delay_after(err))

    @staticmethod
    async def _stream(call, progress: Optional[Callable[[ProgressUpdate], None]], field_name: str):
        try:
            async for event in call:
                if event.WhichOneof("event") == "progress":
                    if progress is not None:
                        progress(_update(event.progress))
                else:
                    return getattr(event, field_name)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        raise ExplainerError("INTERNAL", "the stream ended without a result")

    async def explain(self, image: ImageLike, text: str, *, target: str, answer: str = "",
                      grid: tuple[int, int] = (7, 7), method: str = "auto", budget: int = DEFAULT_BUDGET,
                      seed: int = 0, index: str = "SII", parameters: Optional[Mapping[str, str]] = None,
                      image_baseline: Optional[str] = None, blur_radius: float = 0.0, text_mask: str = "",
                      dry_run: bool = False, progress: Optional[Callable[[ProgressUpdate], None]] = None,
                      timeout: Optional[float] = None) -> Explanation:
        """Explain one instance (see :meth:`ExplainerClient.explain`; ``budget`` 0: the server's default)."""
        request = explain_request(image, text, target=target, answer=answer, grid=grid, method=method, budget=budget,
                                  seed=seed, index=index, parameters=parameters, image_baseline=image_baseline,
                                  blur_radius=blur_radius, text_mask=text_mask, dry_run=dry_run)
        result = await self._call(self._stub.Explain, request, progress, "explanation", timeout)
        return Explanation.from_proto(result, image=np.asarray(to_pil(image)))

    async def faithfulness(self, image: ImageLike, text: str, *, target: str, answer: str = "",
                           grid: tuple[int, int] = (7, 7), patch_scores: Optional[Sequence[float]] = None,
                           token_scores: Optional[Sequence[float]] = None, explainer: str = "multishap",
                           steps: int = 10, eps: float = 0.05, macro_game: bool = False, chunks: int = 6,
                           seed: int = 0, budget: int = DEFAULT_BUDGET, parameters: Optional[Mapping[str, str]] = None,
                           progress: Optional[Callable[[ProgressUpdate], None]] = None,
                           timeout: Optional[float] = None) -> FaithfulnessReport:
        """F_syn and unimodal metrics (see :meth:`ExplainerClient.faithfulness`; ``budget`` 0: the server's default)."""
        request = faithfulness_request(image, text, target=target, answer=answer, grid=grid, patch_scores=patch_scores,
                                       token_scores=token_scores, explainer=explainer, steps=steps, eps=eps,
                                       macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
                                       parameters=parameters)
        return FaithfulnessReport.from_proto(await self._call(self._stub.Faithfulness, request, progress, "result",
                                                              timeout))
