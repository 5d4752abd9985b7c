"""The Python SDK: ExplainerClient (blocking) and AsyncExplainerClient (asyncio).

    from multishap.client import ExplainerClient
    with ExplainerClient("127.0.0.1:50050") as client:
        exp = client.explain("cat.png", "a cat on a couch", target="clip", grid=(7, 7), progress=True)
        exp.phi, exp.tokens, exp.metrics.synergy_ratio, exp.plot()

Errors from the service arrive as :class:`ExplainerError` with the status code's name and
the server's sentence.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

import grpc
import numpy as np

from multishap.service.metrics import dataset_metrics
from multishap.v1 import common_pb2, explainer_pb2, explainer_pb2_grpc

from .explanation import Explanation, FaithfulnessReport, Target, Usage
from .images import ImageLike, to_pil, to_png

DEFAULT_BUDGET = 20_000
BASELINES = {
    None: common_pb2.IMAGE_BASELINE_UNSPECIFIED,
    "zero": common_pb2.IMAGE_BASELINE_ZERO,
    "mean": common_pb2.IMAGE_BASELINE_MEAN,
    "blur": common_pb2.IMAGE_BASELINE_BLUR,
}


class ExplainerError(Exception):
    """An error status from the explainer: ``code`` (e.g. "NOT_FOUND") and ``details``."""

    def __init__(self, code: str, details: str) -> None:
        super().__init__(f"{code}: {details}")
        self.code, self.details = code, details

    @classmethod
    def from_rpc(cls, err: grpc.RpcError) -> "ExplainerError":
        return cls(err.code().name, err.details() or "")


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
        patch_scores=list(patch_scores or []), token_scores=list(token_scores or []), explainer=explainer,
        steps=steps, eps=eps, macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
    )


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
    """Blocking client of the Explainer service."""

    def __init__(self, address: str, timeout: Optional[float] = None, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.address, self.timeout = address, timeout
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

    def _stream(self, call, progress: ProgressArg, label: str, field_name: str):
        callback, done = _progress_callback(progress, label)
        try:
            for event in call:
                if event.WhichOneof("event") == "progress":
                    if callback is not None:
                        callback(_update(event.progress))
                else:
                    return getattr(event, field_name)
        except grpc.RpcError as err:
            raise ExplainerError.from_rpc(err) from None
        finally:
            done()
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

        ``dry_run=True`` selects the coalitions without scoring them: ``phi`` is zeros,
        ``evaluations`` the coalitions the method would score and ``usage`` what the target
        estimates they would cost (requests not yet in its cache, tokens, money).
        """
        request = explain_request(image, text, target=target, answer=answer, grid=grid, method=method, budget=budget,
                                  seed=seed, index=index, parameters=parameters, image_baseline=image_baseline,
                                  blur_radius=blur_radius, text_mask=text_mask, dry_run=dry_run)
        call = self._stub.Explain(request, timeout=timeout or self.timeout)
        result = self._stream(call, progress, "explaining", "explanation")
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
        """F_syn and unimodal metrics of given scores, or of a built-in explainer."""
        request = faithfulness_request(image, text, target=target, answer=answer, grid=grid, patch_scores=patch_scores,
                                       token_scores=token_scores, explainer=explainer, steps=steps, eps=eps,
                                       macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
                                       parameters=parameters)
        call = self._stub.Faithfulness(request, timeout=timeout or self.timeout)
        return FaithfulnessReport.from_proto(self._stream(call, progress, "faithfulness", "result"))

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
        """Explain many instances, appending each result to ``out`` (JSON lines) as it
        finishes. Instances already in ``out`` are skipped, so an interrupted run resumes.

        Each instance is a mapping with ``image``, ``text``, optional ``answer``, ``grid``,
        ``parameters`` and ``id`` (default: a hash of the rest); ``options`` go to explain().
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


def _finished(out: Path) -> dict[str, dict[str, Any]]:
    done: dict[str, dict[str, Any]] = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if "explanation" in row:
                    done[row["id"]] = row
    return done


def run_dataset(client: ExplainerClient, instances, target, concurrency, out: Path, progress, options) -> DatasetReport:
    records = list(instances)
    finished = _finished(out)
    todo = [(instance_id(r), r) for r in records if instance_id(r) not in finished]
    skipped = len(records) - len(todo)
    lock = threading.Lock()
    failed: list[dict[str, str]] = []
    count = [0]
    out.parent.mkdir(parents=True, exist_ok=True)

    def one(item) -> None:
        key, record = item
        try:
            exp = client.explain(record["image"], record["text"], target=target, answer=record.get("answer", ""),
                                 grid=tuple(record.get("grid", options.get("grid", (7, 7)))),
                                 parameters=record.get("parameters"),
                                 **{k: v for k, v in options.items() if k != "grid"})
            line = {"id": key, "text": record["text"], "answer": record.get("answer", ""), "explanation": exp.to_dict()}
        except (ExplainerError, ValueError) as err:
            line = {"id": key, "error": str(err)}
        with lock:
            with out.open("a") as f:
                f.write(json.dumps(line) + "\n")
            if "error" in line:
                failed.append({"id": key, "error": line["error"]})
            else:
                finished[key] = line
            count[0] += 1
            if progress:
                sys.stderr.write(f"\r{count[0] + skipped}/{len(records)} instances ({skipped} already done, "
                                 f"{len(failed)} failed)")
                sys.stderr.flush()

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        list(pool.map(one, todo))
    if progress and todo:
        sys.stderr.write("\n")
    wanted = {instance_id(r) for r in records}
    rows, usages = [], []
    for key, row in finished.items():
        if key in wanted:
            m = row["explanation"]["metrics"]
            rows.append({"id": key, **m, "evaluations": row["explanation"]["evaluations"]})
            usages.append(row["explanation"].get("usage", {}))
    ratios = [r["synergy_ratio"] for r in rows]
    dm = dataset_metrics(ratios) if ratios else None
    total = Usage(**{name: sum(u.get(name, 0) for u in usages) for name in Usage.__dataclass_fields__})
    return DatasetReport(msr=dm.msr if dm else float("nan"), sdr=dm.sdr if dm else float("nan"), rows=rows,
                         skipped=skipped, failed=failed, usage=total)


class AsyncExplainerClient:
    """asyncio client of the Explainer service (same methods as ExplainerClient, awaited)."""

    def __init__(self, address: str, timeout: Optional[float] = None, max_message_bytes: int = 64 * 1024 * 1024) -> None:
        self.address, self.timeout = address, timeout
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

    async def _stream(self, call, progress: Optional[Callable[[ProgressUpdate], None]], field_name: str):
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
                      dry_run: bool = False, progress: Optional[Callable[[ProgressUpdate], None]] = None,
                      timeout: Optional[float] = None) -> Explanation:
        """Explain one instance (see :meth:`ExplainerClient.explain`)."""
        request = explain_request(image, text, target=target, answer=answer, grid=grid, method=method, budget=budget,
                                  seed=seed, index=index, parameters=parameters, dry_run=dry_run)
        result = await self._stream(self._stub.Explain(request, timeout=timeout or self.timeout), progress,
                                    "explanation")
        return Explanation.from_proto(result, image=np.asarray(to_pil(image)))

    async def faithfulness(self, image: ImageLike, text: str, *, target: str, answer: str = "",
                           grid: tuple[int, int] = (7, 7), patch_scores: Optional[Sequence[float]] = None,
                           token_scores: Optional[Sequence[float]] = None, explainer: str = "multishap",
                           steps: int = 10, eps: float = 0.05, macro_game: bool = False, chunks: int = 6,
                           seed: int = 0, budget: int = DEFAULT_BUDGET, parameters: Optional[Mapping[str, str]] = None,
                           progress: Optional[Callable[[ProgressUpdate], None]] = None,
                           timeout: Optional[float] = None) -> FaithfulnessReport:
        request = faithfulness_request(image, text, target=target, answer=answer, grid=grid, patch_scores=patch_scores,
                                       token_scores=token_scores, explainer=explainer, steps=steps, eps=eps,
                                       macro_game=macro_game, chunks=chunks, seed=seed, budget=budget,
                                       parameters=parameters)
        call = self._stub.Faithfulness(request, timeout=timeout or self.timeout)
        return FaithfulnessReport.from_proto(await self._stream(call, progress, "result"))
