"""The dataset runner both clients share: which instances a results file already answers (row keys), the file
itself (JSON lines, appended to and compacted), one run's bookkeeping and its report; a client adds only how
calls run at once (threads or asyncio tasks)."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import stat
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Iterator, Mapping, Optional, Union

from multishap.service import defaults
from multishap.service.audit import SplitMetrics, split_metrics
from multishap.service.math.metrics import dataset_summary

from .explanation import Explanation, Usage
from .fanout import on_tasks, on_threads
from .images import content_bytes
from .progress import DatasetProgress
from .requests import explain_call

if TYPE_CHECKING:
    import pandas

CONCURRENCY = defaults.DATASET_CONCURRENCY
RESULTS_FILE = defaults.RESULTS_FILE

# The explain() options that change Phi, with explain()'s defaults: a row is reused only when all match.
PHI_OPTIONS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(explain_call).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name not in ("target", "progress", "timeout")
}
# The explain() options that add audit parts to a row (they change the row, not Φ).
AUDIT_OPTIONS = ("candidates", "ground_truth", "influence_budget", "faithfulness", "role")
# A record's own explain() options, over the run's.
RECORD_OPTIONS = ("answer", "grid", "parameters", "ground_truth", "candidates", "role")

Item = tuple[tuple[str, str], Mapping[str, Any]]  # ((id, key), record)
Outcome = Union[Explanation, Exception]


@dataclass
class DatasetReport:
    """MSR and SDR over the finished instances, one row per finished instance (id, metrics, evaluations, seconds,
    usage, and what an audit adds: ``role``, ``model_answer``, ``correct``, ``f_syn``), the failures (id and
    error), the usage summed over the rows, earlier runs included, and ``splits``: MSR, SDR and F_syn with 95%
    bootstrap intervals over all rows, the correct and incorrect ones and the true and foil targets
    (:func:`multishap.service.audit.split_metrics`)."""

    msr: float
    sdr: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    usage: Usage = Usage()
    splits: list[SplitMetrics] = field(default_factory=list)

    def table(self) -> str:
        lines = ["| id | synergy ratio | total | synergy | suppression | evaluations |", "|---|---|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {r['id']} | {r['synergy_ratio']:.3f} | {r['total']:.4g} | {r['synergy']:.4g} | "
                         f"{r['suppression']:.4g} | {r['evaluations']} |")
        return "\n".join(lines)

    def splits_table(self) -> str:
        """The splits as a markdown table: instances, MSR, SDR and F_syn, each with its interval."""
        def ci(value: float, interval: tuple[float, float]) -> str:
            return "n/a" if value != value else f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"

        level = f"{self.splits[0].level:.0%}" if self.splits else "95%"
        lines = [f"| split | instances | MSR [{level} CI] | SDR [{level} CI] | F_syn [{level} CI] |",
                 "|---|---|---|---|---|"]
        for s in self.splits:
            lines.append(f"| {s.name} | {s.count} | {ci(s.msr, s.msr_ci)} | {ci(s.sdr, s.sdr_ci)} | "
                         f"{ci(s.f_syn, s.f_syn_ci)} |")
        return "\n".join(lines)

    def to_html(self, title: Optional[str] = None) -> str:
        """The self-contained HTML report of the run: MSR and SDR with intervals, the splits, every row and the
        failures."""
        from .report_page import dataset_page

        return dataset_page(self, title)

    def save_html(self, path: Union[str, Path], title: Optional[str] = None) -> Path:
        """Write :meth:`to_html` to ``path``; returns the path."""
        from .report_page import write_page

        return write_page(self.to_html(title), Path(path))

    def to_dataframe(self) -> "pandas.DataFrame":
        """One row per instance: the finished ones with their metrics, evaluations, seconds and usage, then the
        failed ones with their error (needs pandas: ``pip install 'multishap[notebook]'``)."""
        try:
            import pandas
        except ImportError as err:
            raise ImportError("DatasetReport.to_dataframe() needs pandas: pip install 'multishap[notebook]'") from err
        return pandas.DataFrame([{**row, "error": None} for row in self.rows] + list(self.failed))


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


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse, before any call, an option explain_dataset cannot pass to explain()."""
    unknown = sorted(set(options) - set(PHI_OPTIONS) - {"timeout"})
    if unknown:
        raise TypeError(f"explain_dataset() got options explain() does not take per instance: {', '.join(unknown)}")


def explain_options(record: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """The explain() keyword arguments for one dataset record: its answer, grid, parameters, ground truth and
    candidates over ``options``."""
    merged = {**options, **{k: record[k] for k in RECORD_OPTIONS if k in record}}
    if "grid" in merged:
        merged["grid"] = tuple(merged["grid"])
    if merged.get("candidates") is not None:
        merged["candidates"] = [str(c) for c in merged["candidates"]]
    return merged


def row_key(record: Mapping[str, Any], target: str, options: Mapping[str, Any]) -> str:
    """A digest of everything that changes Phi (target, text, image content, options), so that a resumed run
    reuses a row only when the same explanation is asked for again."""
    merged = {name: explain_options(record, options).get(name, default) for name, default in PHI_OPTIONS.items()}
    for name in AUDIT_OPTIONS:  # not asked for: the key of the same request before audits existed
        if merged[name] == PHI_OPTIONS[name] or (name in ("candidates", "ground_truth") and not merged[name]):
            del merged[name]
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
        if replaces(row, self.rows.get(slot)):
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


class DatasetRun:
    """One run over a results file: the instances it must explain (``todo``: those the file holds no result for
    under the same key), each outcome appended as it comes, the progress bar, and the report."""

    def __init__(self, results: ResultsFile, instances: Iterable[Mapping[str, Any]], target: str,
                 options: Mapping[str, Any], progress: bool) -> None:
        self.results, self.target, self.options = results, target, options
        self._wanted, self.failed = _keys(instances, target, options, results)
        self.todo: list[Item] = [(slot, r) for slot, r in self._wanted.items() if results.finished(*slot) is None]
        self.skipped = len(self._wanted) - len(self.todo)
        self.progress = DatasetProgress(progress, len(self._wanted), self.skipped, len(self.failed))
        self._lock = threading.Lock()

    def arguments(self, item: Item) -> dict[str, Any]:
        """explain()'s arguments for one item of ``todo``."""
        _, record = item
        return dict(image=record["image"], text=record["text"], target=self.target,
                    **explain_options(record, self.options))

    def settle(self, item: Item, outcome: Outcome) -> None:
        """Append the item's explanation, or its error, to the results file and advance the bar."""
        (row_id, key), record = item
        if isinstance(outcome, Exception):
            line = {"id": row_id, "key": key, "error": str(outcome)}
        else:
            line = {"id": row_id, "key": key, "text": record["text"],
                    "answer": explain_options(record, self.options).get("answer", ""),
                    "explanation": outcome.to_dict()}
        with self._lock:
            self.results.append(line)
            if "error" in line:
                self.failed.append({"id": row_id, "error": line["error"]})
            self.progress.advance(len(self.failed))

    def with_threads(self, explain: Callable[..., Explanation], concurrency: int) -> None:
        """Explain ``todo`` with the blocking ``explain`` on ``concurrency`` threads."""
        on_threads(self.todo, explain, self.arguments, self.settle, concurrency)

    async def with_tasks(self, explain: Callable[..., Awaitable[Explanation]], concurrency: int) -> None:
        """Explain ``todo`` with the asyncio ``explain``, in tasks of which ``concurrency`` run at once."""
        await on_tasks(self.todo, explain, self.arguments, self.settle, concurrency)

    def report(self) -> DatasetReport:
        """MSR, SDR and usage over every instance asked for that has a result, earlier runs included."""
        done = [(row_id, row) for row_id, key in self._wanted if (row := self.results.finished(row_id, key))]
        return dataset_report(done, self.failed, self.skipped)


@contextmanager
def dataset_run(instances: Iterable[Mapping[str, Any]], target: str, out: Path, progress: bool,
                options: Mapping[str, Any]) -> Iterator[DatasetRun]:
    """Hold ``out`` for one run: lock it, read what it holds, yield the run, then rewrite it compactly."""
    check_options(options)
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out):
        run = DatasetRun(ResultsFile(out), instances, target, options, progress)
        try:
            yield run
        finally:
            run.progress.close()
        run.results.compact()


def replaces(row: Mapping[str, Any], held: Optional[Mapping[str, Any]]) -> bool:
    """Whether a later results line ``row`` replaces the line ``held`` for its (id, key): a later line wins, but a
    failure never replaces a success."""
    return "explanation" in row or held is None or "explanation" not in held


def dataset_report(done: Iterable[tuple[str, Mapping[str, Any]]], failed: list[dict[str, str]],
                   skipped: int = 0) -> DatasetReport:
    """The report of the finished lines ``done`` ((id, results-file line)) and the failures: MSR, SDR, rows,
    summed usage and splits."""
    rows = [_report_row(row_id, row) for row_id, row in done]
    dm = dataset_summary(r["synergy_ratio"] for r in rows)
    total = Usage(**{name: sum(r[name] for r in rows) for name in Usage.__dataclass_fields__})
    return DatasetReport(msr=dm.msr, sdr=dm.sdr, rows=rows, skipped=skipped, failed=failed, usage=total,
                         splits=split_metrics(rows))


def results_report(lines: Iterable[Mapping[str, Any]]) -> DatasetReport:
    """The report of a results file's lines (without touching the file): one row per instance id, its latest
    success (a file run twice with other options holds more than one), else its latest failure."""
    kept: dict[str, Mapping[str, Any]] = {}
    for row in lines:
        row_id = str(row["id"])
        if replaces(row, kept.get(row_id)):
            kept[row_id] = row
    done = [(row_id, row) for row_id, row in kept.items() if "explanation" in row]
    failed = [{"id": row_id, "error": str(row["error"])} for row_id, row in kept.items() if "explanation" not in row]
    return dataset_report(done, failed)


def audit_columns(explanation: Mapping[str, Any]) -> dict[str, Any]:
    """What an audit adds to a row, from an explanation's dict: its role (true or foil target), the model's
    answer, whether it is correct (None: not judged) and F_syn (None: not computed)."""
    answer = explanation.get("answer") or {}
    faithfulness = explanation.get("faithfulness") or {}
    return {"role": explanation.get("role", ""), "model_answer": answer.get("answer") if answer else None,
            "correct": answer.get("correct") if answer.get("judged") else None,
            "f_syn": faithfulness.get("f_syn")}


def _report_row(row_id: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The report's row of one finished instance: id, metrics, evaluations, seconds, usage and audit columns."""
    explanation = row["explanation"]
    usage = explanation.get("usage", {})
    return {"id": row_id, **explanation["metrics"], "evaluations": explanation["evaluations"],
            "seconds": explanation.get("seconds", 0.0),
            **{name: usage.get(name, f.default) for name, f in Usage.__dataclass_fields__.items()},
            **audit_columns(explanation)}


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
