"""Dataset audits: every record explained at every target, on a thread pool or on Ray, each finished row stored at
once in a Parquet directory (and any other sink), resumable, with MSR and SDR per target.

    from multishap.client.audit import run_audit
    report = run_audit(records, address="127.0.0.1:50050", targets=["clip", "siglip"], engine="ray",
                       out="audit.parquet", grid=(4, 4), budget=2000)
    print(report.table())
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence, Union

from multishap.service import defaults
from multishap.service.audit import SplitMetrics, split_metrics
from multishap.service.math.metrics import dataset_summary
from multishap.service.rpc.tls import TLSArg

from .dataset import check_options, exclusive, explain_options, instance_id, row_key
from .engines import AUDIT_OUT, CONCURRENCY, ENGINES, MAX_IN_FLIGHT_PER_TARGET, AuditTask, Connection, Outcome
from .engines.jobstore import job_store_sink
from .engines.parquet import ParquetSink, result_row
from .progress import DatasetProgress

if TYPE_CHECKING:
    import pandas

Slot = tuple[str, str, str]      # (id, target, key)


class RowSink(Protocol):
    """Where an audit stores its rows (the Parquet directory is the built-in one).

    ``done()`` gives the (id, target, key) of the rows it already holds successfully; a run skips a row that every
    sink holds. ``write(row)`` stores one finished row (the columns of
    :data:`multishap.client.engines.parquet.SCHEMA`; ``error`` is None for a success) before the run goes on.
    """

    def done(self) -> set[tuple[str, str, str]]: ...

    def write(self, row: dict) -> None: ...


@dataclass(frozen=True)
class TargetSummary:
    """MSR and SDR at one target over its finished rows (NaN when none finished), how many failed, and the splits
    (all, correct, incorrect, true, foil) with their intervals (:func:`multishap.service.audit.split_metrics`)."""

    target: str
    msr: float
    sdr: float
    instances: int
    failed: int
    splits: list[SplitMetrics] = field(default_factory=list)


@dataclass
class AuditReport:
    """Per-target MSR and SDR, the stored rows of every (record, target) asked for (earlier runs included), the
    failures of this run (id, target, error) and how many rows were resumed rather than explained."""

    targets: dict[str, TargetSummary]
    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: int = 0
    jobs: dict[str, str] = field(default_factory=dict)   # target -> id of the job-store job holding its rows

    def table(self) -> str:
        """The per-target summary as a markdown table."""
        lines = ["| target | instances | MSR | SDR | failed |", "|---|---|---|---|---|"]
        lines += [f"| {s.target} | {s.instances} | {s.msr:.3f} | {s.sdr:.3f} | {s.failed} |"
                  for s in self.targets.values()]
        return "\n".join(lines)

    def to_dataframe(self) -> "pandas.DataFrame":
        """One row per stored (id, target), then one per failure (needs pandas:
        ``pip install 'multishap[notebook]'``)."""
        try:
            import pandas
        except ImportError as err:
            raise ImportError("AuditReport.to_dataframe() needs pandas: pip install 'multishap[notebook]'") from err
        return pandas.DataFrame(self.rows + [{**f, "key": None} for f in self.failures])


def run_audit(records: Iterable[Mapping[str, Any]], *, address: str, targets: Sequence[str], engine: str = "local",
              out: Union[str, Path] = AUDIT_OUT, ray_address: Optional[str] = None, concurrency: int = CONCURRENCY,
              max_in_flight_per_target: int = MAX_IN_FLIGHT_PER_TARGET, progress: bool = True,
              sinks: Sequence[RowSink] = (), tls: TLSArg = None, token: Optional[str] = None,
              timeout: Optional[float] = None, max_retries: int = defaults.MAX_RETRIES,
              job_store: Optional[str] = None, job_name: str = "", **explain_options: Any) -> AuditReport:
    """Explain each record at each target (``engine`` "local": threads here; "ray": Ray tasks) and store every
    finished row at once in ``out`` (a directory of Parquet parts) and in each of ``sinks``.

    Records are explain_dataset()'s (``image``, ``text``, optional ``answer``, ``grid``, ``parameters``, ``id``);
    a row that every sink already holds for the same (id, target, key) is skipped, so a killed run resumes where
    it stopped. One instance's failure is an error row, not the end of the run. ``explain_options`` go to
    explain() for every row; ``timeout``, ``max_retries``, ``tls`` and ``token`` are ExplainerClient's (each
    worker opens its own client with them). With ``job_store`` (a SQLAlchemy URL) the rows are also stored
    there, one job per target named ``job_name`` (:mod:`.engines.jobstore`), where the explainer's Jobs API
    serves them; the report's ``jobs`` names them.
    """
    records = list(records)
    _check(records, targets, engine, ray_address, concurrency, max_in_flight_per_target)
    check_options(explain_options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        stored = job_store_sink(job_store, job_name, records, targets, explain_options)
        try:
            store = ParquetSink(out)
            audit = _Audit([store, *sinks, *stored], records, list(targets), explain_options, progress)
            connection = Connection(address, timeout=timeout, max_retries=max_retries, tls=tls, token=token)
            try:
                _engine(engine, ray_address)(audit.todo, connection, audit.settle, concurrency=concurrency,
                                             max_in_flight_per_target=max_in_flight_per_target)
            finally:
                audit.progress.close()
            store.compact()
        finally:
            for sink in stored:
                sink.close()
    report = audit.report(store)
    for sink in stored:
        report.jobs.update({target: job.id for target, job in sink.jobs.items()})
    return report


class _Audit:
    """One run's bookkeeping: the rows wanted, those still to do, each outcome written to every sink."""

    def __init__(self, sinks: list[RowSink], records: list[Mapping[str, Any]], targets: list[str],
                 options: Mapping[str, Any], progress: bool) -> None:
        self.sinks, self.targets = sinks, targets
        self.failures: list[dict[str, str]] = []
        tasks: dict[Slot, AuditTask] = {}  # a record given twice is explained once
        for record in records:
            row_id = instance_id(record)
            for target in targets:
                try:
                    key = row_key(record, target, options)
                except ValueError as err:
                    self._write(result_row((row_id, target, ""), str(record.get("text", "")),
                                           _answer(record, options), {"error": str(err)}))
                    continue
                tasks[(row_id, target, key)] = AuditTask(row_id, target, key, record, options)
        self.wanted = list(tasks)
        stored = set.intersection(*(set(sink.done()) for sink in sinks))
        self.todo = [task for slot, task in tasks.items() if slot not in stored]
        self.skipped = len(tasks) - len(self.todo)
        self.progress = DatasetProgress(progress, len(tasks), self.skipped, len(self.failures))

    def settle(self, task: AuditTask, outcome: Outcome) -> None:
        """Store one finished row in every sink, then advance the bar."""
        self._write(result_row(task.slot, task.record["text"], _answer(task.record, task.options), outcome))
        self.progress.advance(len(self.failures))

    def _write(self, row: dict[str, Any]) -> None:
        for sink in self.sinks:
            sink.write(row)
        if row["error"] is not None:
            self.failures.append({"id": row["id"], "target": row["target"], "error": row["error"]})

    def report(self, store: ParquetSink) -> AuditReport:
        """The report over every wanted row the store holds, earlier runs included."""
        rows = [store.rows[slot] for slot in self.wanted if slot in store.rows and store.rows[slot]["error"] is None]
        summaries = {}
        for target in self.targets:
            own = [row for row in rows if row["target"] == target]
            dm = dataset_summary(row["synergy_ratio"] for row in own)
            summaries[target] = TargetSummary(target, dm.msr, dm.sdr, len(own),
                                              sum(f["target"] == target for f in self.failures), split_metrics(own))
        return AuditReport(summaries, rows, self.failures, self.skipped)


def _answer(record: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    return str(explain_options(record, options).get("answer", ""))


def _check(records: list[Any], targets: Sequence[str], engine: str, ray_address: Optional[str], concurrency: int,
           per_target: int) -> None:
    """Refuse, before any work, arguments the run cannot use."""
    for n, record in enumerate(records):
        if not isinstance(record, Mapping) or "image" not in record or "text" not in record:
            raise ValueError(f"record {n} is not a mapping with an \"image\" and a \"text\"")
    if isinstance(targets, str) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise ValueError("targets must be a non-empty list of target names")
    if len(set(targets)) != len(targets):
        raise ValueError("targets must not name a target twice")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if ray_address and engine != "ray":
        raise ValueError("a Ray address is only used by the ray engine; choose engine ray or give no address")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be a whole number of at least 1; got {concurrency!r}")
    if not isinstance(per_target, int) or per_target < 1:
        raise ValueError(f"max_in_flight_per_target must be a whole number of at least 1; got {per_target!r}")


def _engine(name: str, ray_address: Optional[str]) -> Callable[..., None]:
    """The engine's run function; the ray engine is imported only when asked for."""
    if name == "ray":
        from .engines.ray import run_ray

        return partial(run_ray, ray_address=ray_address)
    from .engines.local import run_local

    return run_local
