"""Ranking explainers over a shared set of instances, with pairwise significance and effect sizes.

Input rows are ``(instance, explainer, score)``, higher score = better (e.g. F_syn); every
explainer must score every instance exactly once. Per instance, explainers are ranked 1 = best,
tied scores sharing the mean of their ranks; ``mean_ranks`` averages those ranks over instances.

Each pair ``(a, b)`` gets a two-sided Wilcoxon signed-rank test of ``d = score_a - score_b`` over
the instances: zero differences are dropped (Wilcoxon's method), ``|d|`` is ranked with ties
averaged, and ``W+`` is the rank sum of the positive differences. With at most 25 nonzero
differences and no ties among ``|d|`` the p-value is exact, ``2 * min(P(W <= W+), P(W >= W+))``
under the null distribution of the signed-rank sum (capped at 1); otherwise it is the normal
approximation with the tie-corrected variance ``(n(n+1)(2n+1) - sum(t^3 - t) / 2) / 24`` and a
continuity correction of 0.5 towards the mean. ``p_bonferroni`` multiplies each p-value by the
number of pairs (capped at 1). ``effect_size`` is the matched-pairs rank-biserial correlation
``(W+ - W-) / (W+ + W-)`` in [-1, 1], positive when ``a`` scores higher (0 when every
difference is zero). The tests use numpy only; scipy is no runtime dependency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Iterable

import numpy as np

from multishap.service.audit.ranks import average_ranks, tie_counts
from multishap.service.math.validation import ArgumentError

EXACT_MAX_N = 25
COLUMNS = ("instance", "explainer", "score")


@dataclass(frozen=True)
class PairwiseTest:
    """Wilcoxon signed-rank test of explainer ``a`` against ``b`` over the shared instances."""

    a: str
    b: str
    n_nonzero: int
    w_plus: float
    w_minus: float
    statistic: float
    p_value: float
    p_bonferroni: float
    effect_size: float
    method: str


@dataclass(frozen=True)
class ExplainerComparison:
    """Mean rank per explainer (1 = best) and the pairwise tests, explainers in first-seen order."""

    explainers: tuple[str, ...]
    instances: int
    mean_ranks: dict[str, float]
    pairs: tuple[PairwiseTest, ...]


def _rows(table: Any) -> list[tuple[Any, Any, Any]]:
    """The table's rows as (instance, explainer, score) tuples, from a DataFrame or an iterable."""
    if hasattr(table, "columns") and hasattr(table, "itertuples"):
        missing = [c for c in COLUMNS if c not in table.columns]
        if missing:
            raise ArgumentError(f"table must have columns {COLUMNS}; it lacks {missing}")
        return list(table[list(COLUMNS)].itertuples(index=False, name=None))
    if isinstance(table, (str, bytes)) or not isinstance(table, Iterable):
        raise ArgumentError("table must be a list of (instance, explainer, score) rows or a DataFrame with those columns")
    rows = []
    for row in table:
        if isinstance(row, (str, bytes)) or not hasattr(row, "__len__") or len(row) != 3:
            raise ArgumentError(f"each row of table must be (instance, explainer, score); got {row!r}")
        rows.append(tuple(row))
    return rows


def _score_matrix(table: Any) -> tuple[list[str], list[Any], np.ndarray]:
    """Explainers, instances and the (instances, explainers) score matrix, refusing gaps and duplicates."""
    explainers: dict[str, int] = {}
    instances: dict[Any, int] = {}
    cells: dict[tuple[int, int], float] = {}
    for instance, explainer, score in _rows(table):
        if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)):
            raise ArgumentError(f"score of explainer {explainer!r} on instance {instance!r} must be a number; got {score!r}")
        if not math.isfinite(float(score)):
            raise ArgumentError(f"score of explainer {explainer!r} on instance {instance!r} must be finite; got {score!r}")
        key = (instances.setdefault(instance, len(instances)), explainers.setdefault(str(explainer), len(explainers)))
        if key in cells:
            raise ArgumentError(f"explainer {explainer!r} has more than one score on instance {instance!r}")
        cells[key] = float(score)
    if len(explainers) < 2:
        raise ArgumentError(f"table must score at least 2 explainers to compare; got {len(explainers)}")
    scores = np.full((len(instances), len(explainers)), np.nan)
    for (i, e), score in cells.items():
        scores[i, e] = score
    names, ids = list(explainers), list(instances)
    for e, name in enumerate(names):
        gaps = [ids[i] for i in np.flatnonzero(np.isnan(scores[:, e]))]
        if gaps:
            raise ArgumentError(
                f"explainer {name!r} has no score on instance(s) {gaps[:5]!r}: "
                "every explainer must score the same instances"
            )
    return names, ids, scores


def _signed_rank_counts(n: int) -> np.ndarray:
    """Null distribution of W+ for n untied nonzero differences, as counts of the 2^n sign patterns."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for rank in range(1, n + 1):
        counts[rank:] = counts[rank:] + counts[:-rank].copy()
    return counts


def wilcoxon_signed_rank(d: np.ndarray) -> tuple[int, float, float, float, str]:
    """Two-sided Wilcoxon signed-rank test of paired differences: (n, W+, W-, p, method)."""
    d = np.asarray(d, dtype=np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 0, 0.0, 0.0, 1.0, "none"
    ranks = average_ranks(np.abs(d))
    w_plus, w_minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    ties = tie_counts(np.abs(d))
    if n <= EXACT_MAX_N and (ties == 1).all():
        counts = _signed_rank_counts(n)
        k = int(round(w_plus))
        total = counts.sum()
        p = 2.0 * min(counts[: k + 1].sum(), counts[k:].sum()) / total
        return n, w_plus, w_minus, float(min(1.0, p)), "exact"
    mean = n * (n + 1) / 4.0
    se = math.sqrt((n * (n + 1) * (2 * n + 1) - float((ties**3 - ties).sum()) / 2.0) / 24.0)
    z = (w_plus - mean) / se
    z -= math.copysign(0.5, z) / se if z != 0 else 0.0
    return n, w_plus, w_minus, float(math.erfc(abs(z) / math.sqrt(2.0))), "normal"


def compare_explainers(table: Any) -> ExplainerComparison:
    """Mean ranks of explainers and pairwise Wilcoxon tests with Bonferroni correction and effect sizes."""
    names, ids, scores = _score_matrix(table)
    ranks = np.vstack([average_ranks(-row) for row in scores])
    pairs = list(combinations(range(len(names)), 2))
    tests = []
    for a, b in pairs:
        n, w_plus, w_minus, p, method = wilcoxon_signed_rank(scores[:, a] - scores[:, b])
        total = w_plus + w_minus
        tests.append(
            PairwiseTest(
                a=names[a],
                b=names[b],
                n_nonzero=n,
                w_plus=w_plus,
                w_minus=w_minus,
                statistic=min(w_plus, w_minus),
                p_value=p,
                p_bonferroni=min(1.0, p * len(pairs)),
                effect_size=(w_plus - w_minus) / total if total > 0 else 0.0,
                method=method,
            )
        )
    return ExplainerComparison(
        explainers=tuple(names),
        instances=len(ids),
        mean_ranks={name: float(ranks[:, e].mean()) for e, name in enumerate(names)},
        pairs=tuple(tests),
    )
