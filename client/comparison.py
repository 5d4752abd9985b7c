"""Ranking explainers by F_syn over a dataset, through the service: every record is scored once per explainer with
the Faithfulness call, then :func:`multishap.service.audit.compare_explainers` gives mean ranks, Wilcoxon tests with
Bonferroni correction and effect sizes. Shared by both clients; a client adds only how calls run at once."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Optional, Sequence

from multishap.service.audit import ExplainerComparison, compare_explainers
from multishap.service.math.attributions import BUILT_IN_EXPLAINERS

from .dataset import instance_id
from .explanation import FaithfulnessReport
from .fanout import on_tasks, on_threads
from .requests import faithfulness_call

if TYPE_CHECKING:
    import pandas

# faithfulness() options a comparison passes to every call; the explainer and its scores are the comparison's own.
OPTIONS = tuple(name for name, p in inspect.signature(faithfulness_call).parameters.items()
                if p.kind is p.KEYWORD_ONLY
                and name not in ("target", "explainer", "patch_scores", "token_scores", "progress"))
# A record's own options, over the comparison's (as explain_dataset reads them).
_RECORD_OPTIONS = ("answer", "grid", "parameters")
Task = tuple[str, str, dict[str, Any]]  # (instance id, explainer, faithfulness() arguments)


@dataclass
class ComparisonReport:
    """F_syn of every (instance, explainer), the failures, and the comparison over the instances every explainer
    scored (None when fewer than two explainers or no such instance)."""

    explainers: tuple[str, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    comparison: Optional[ExplainerComparison] = None

    def table(self) -> str:
        """Mean ranks (1 = best) and the pairwise tests, as markdown tables."""
        if self.comparison is None:
            return "no comparison: fewer than two explainers, or no instance that every explainer scored"
        c = self.comparison
        lines = [f"over {c.instances} instances", "", "| explainer | mean rank | mean F_syn |", "|---|---|---|"]
        for name in c.explainers:
            scores = [r["f_syn"] for r in self.rows if r["explainer"] == name]
            lines.append(f"| {name} | {c.mean_ranks[name]:.3f} | {sum(scores) / len(scores):.4f} |")
        lines += ["", "| a | b | Wilcoxon p | Bonferroni p | effect size (a > b) | test |", "|---|---|---|---|---|---|"]
        lines += [f"| {p.a} | {p.b} | {p.p_value:.4g} | {p.p_bonferroni:.4g} | {p.effect_size:+.3f} | {p.method} |"
                  for p in c.pairs]
        return "\n".join(lines)

    def to_dataframe(self) -> "pandas.DataFrame":
        """One row per (instance, explainer): f_syn, f_ins, f_del, evaluations, then the failures."""
        try:
            import pandas
        except ImportError as err:
            raise ImportError("ComparisonReport.to_dataframe() needs pandas: pip install 'multishap[notebook]'") from err
        return pandas.DataFrame([{**r, "error": None} for r in self.rows] + list(self.failed))


class ComparisonRun:
    """The faithfulness calls of one comparison, their outcomes and the report."""

    def __init__(self, records: Iterable[Mapping[str, Any]], target: str, explainers: Sequence[str],
                 options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - set(OPTIONS) - {"timeout"})
        if unknown:
            raise TypeError(f"compare_explainers() got options faithfulness() does not take: {', '.join(unknown)}")
        if isinstance(explainers, str):
            raise TypeError("explainers must be a list of names, not one string")
        self.records = list(records)
        self.explainers = tuple(explainers) + tuple(_given_names(self.records))
        bad = [name for name in explainers if name not in BUILT_IN_EXPLAINERS]
        if bad:
            raise ValueError(f"unknown built-in explainer {bad[0]!r}: choose among {', '.join(BUILT_IN_EXPLAINERS)}, "
                             "or give a record's own scores under \"explanations\"")
        if len(set(self.explainers)) != len(self.explainers):
            raise ValueError("an explainer is named twice")
        self.tasks = [task for record in self.records for task in _tasks(record, target, explainers, options)]
        self.rows: list[dict[str, Any]] = []
        self.failed: list[dict[str, str]] = []

    def settle(self, task: Task, outcome: Any) -> None:
        """Keep one call's F_syn, or its error."""
        row_id, explainer, _ = task
        if isinstance(outcome, Exception):
            self.failed.append({"instance": row_id, "explainer": explainer, "error": str(outcome)})
            return
        report: FaithfulnessReport = outcome
        self.rows.append({"instance": row_id, "explainer": explainer, "f_syn": report.f_syn, "f_ins": report.f_ins,
                          "f_del": report.f_del, "evaluations": report.evaluations})

    def with_threads(self, faithfulness: Callable[..., FaithfulnessReport], concurrency: int) -> None:
        """Make every call with the blocking ``faithfulness`` on ``concurrency`` threads."""
        on_threads(self.tasks, faithfulness, _arguments, self.settle, concurrency)

    async def with_tasks(self, faithfulness: Callable[..., Awaitable[FaithfulnessReport]], concurrency: int) -> None:
        """Make every call with the asyncio ``faithfulness``, ``concurrency`` at once."""
        await on_tasks(self.tasks, faithfulness, _arguments, self.settle, concurrency)

    def report(self) -> ComparisonReport:
        """The rows in task order, and the comparison over the instances that every explainer scored."""
        order = {(row_id, explainer): k for k, (row_id, explainer, _) in enumerate(self.tasks)}
        rows = sorted(self.rows, key=lambda r: order[r["instance"], r["explainer"]])
        failed_ids = {f["instance"] for f in self.failed}
        complete = [r for r in rows if r["instance"] not in failed_ids]
        comparison = None
        if len(self.explainers) >= 2 and complete:
            comparison = compare_explainers([(r["instance"], r["explainer"], r["f_syn"]) for r in complete])
        return ComparisonReport(self.explainers, rows, self.failed, comparison)


def _arguments(task: Task) -> dict[str, Any]:
    """A task's faithfulness() arguments."""
    return task[2]


def _given_names(records: Sequence[Mapping[str, Any]]) -> list[str]:
    """The names of the records' own explanations, in first-seen order."""
    names: list[str] = []
    for record in records:
        for name in record.get("explanations") or {}:
            if str(name) not in names:
                names.append(str(name))
    return names


def _tasks(record: Mapping[str, Any], target: str, explainers: Sequence[str],
           options: Mapping[str, Any]) -> list[Task]:
    """One faithfulness() call per built-in explainer, and one per explanation the record gives."""
    row_id = instance_id(record)
    merged = {**options, **{k: record[k] for k in _RECORD_OPTIONS if k in record}}
    if "grid" in merged:
        merged["grid"] = tuple(merged["grid"])
    base = dict(image=record["image"], text=record["text"], target=target, **merged)
    tasks = [(row_id, name, {**base, "explainer": name}) for name in explainers]
    for name, scores in (record.get("explanations") or {}).items():
        if not isinstance(scores, Mapping):
            raise ValueError(f"record {row_id!r}: explanation {str(name)!r} must be an object with patch_scores and "
                             "token_scores")
        tasks.append((row_id, str(name), {**base, "patch_scores": scores.get("patch_scores"),
                                          "token_scores": scores.get("token_scores")}))
    return tasks


def comparison_run(records: Iterable[Mapping[str, Any]], *, target: str,
                   explainers: Sequence[str] = BUILT_IN_EXPLAINERS, **options: Any) -> ComparisonRun:
    """Rank explainers by F_syn over ``records`` (explain_dataset()'s records).

    Every record is scored with each built-in explainer of ``explainers`` ("multishap", "random", "shapley"), and
    with each explanation it gives itself under ``"explanations": {name: {"patch_scores": [...], "token_scores":
    [...]}}`` (another explainer's output, e.g. Grad-CAM's), one Faithfulness call each; ``options`` are
    faithfulness()'s (steps, eps, budget, seed, masking: the F_syn protocol masks with ``image_baseline="blur"``).
    The comparison covers the instances every explainer scored: mean ranks (1 = best), two-sided Wilcoxon
    signed-rank tests per pair with Bonferroni correction, and rank-biserial effect sizes
    (:func:`multishap.service.audit.compare_explainers`).
    """
    return ComparisonRun(records, target, explainers, options)
