"""Dataset metrics per split, with bootstrap intervals: every instance, the ones the model answers correctly and
incorrectly, and those explained on the true target and on a foil (MultiSHAP's true vs foil caption comparison).

A row is a mapping with ``synergy_ratio`` (the instance's R), and optionally ``correct`` (True, False, or None:
not judged), ``role`` (``"true"``, ``"foil"`` or empty: the target explained is the ground truth or a foil) and
``f_syn`` (F_syn of the instance's MultiSHAP scores, or None: not computed). A split holds the rows that have its
label; splits with no row are left out. MSR and SDR come with :func:`bootstrap_dataset_metrics`'s percentile
intervals; F_syn is the mean over the split's rows that have one, with a percentile-bootstrap interval of that
mean (resampling those rows, ``numpy.random.default_rng(seed)``); NaN with no such row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import numpy as np

from multishap.service.audit.bootstrap import bootstrap_dataset_metrics
from multishap.service.math.validation import ArgumentError

ROLES = ("true", "foil")  # what an explained target is: the ground truth, or a wrong one on purpose
_NAN_CI = (math.nan, math.nan)


@dataclass(frozen=True)
class SplitMetrics:
    """MSR, SDR and mean F_syn of one split, each with its interval at ``level``."""

    name: str
    count: int
    msr: float
    msr_ci: tuple[float, float]
    sdr: float
    sdr_ci: tuple[float, float]
    f_syn: float
    f_syn_ci: tuple[float, float]
    f_syn_count: int
    level: float


def bootstrap_mean(values: Iterable[float], n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> tuple[float, tuple[float, float]]:
    """The mean of ``values`` and its percentile-bootstrap interval; NaN for no value."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        return math.nan, _NAN_CI
    if not np.isfinite(x).all():
        raise ArgumentError("bootstrap_mean needs finite numbers")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(x.mean()), (float(low), float(high))


def _label_sets(row: Mapping[str, Any]) -> list[str]:
    names = ["all"]
    correct = row.get("correct")
    if correct is not None:
        names.append("correct" if correct else "incorrect")
    role = row.get("role") or ""
    if role:
        if role not in ROLES:
            raise ArgumentError(f"a row's role must be one of {', '.join(ROLES)} or empty; got {role!r}")
        names.append(role)
    return names


def split_metrics(rows: Iterable[Mapping[str, Any]], n_boot: int = 2000, seed: int = 0,
                  level: float = 0.95) -> list[SplitMetrics]:
    """The metrics of every non-empty split, in the order all, correct, incorrect, true, foil."""
    grouped: dict[str, list[Mapping[str, Any]]] = {name: [] for name in ("all", "correct", "incorrect", *ROLES)}
    for row in rows:
        for name in _label_sets(row):
            grouped[name].append(row)
    out = []
    for name, members in grouped.items():
        if not members:
            continue
        ratios = [float(r["synergy_ratio"]) for r in members]
        ci = bootstrap_dataset_metrics(ratios, n_boot=n_boot, seed=seed, level=level)
        scored = [float(r["f_syn"]) for r in members if r.get("f_syn") is not None]
        f_syn, f_syn_ci = bootstrap_mean(scored, n_boot=n_boot, seed=seed, level=level)
        out.append(SplitMetrics(name=name, count=len(members), msr=ci.msr, msr_ci=ci.msr_ci, sdr=ci.sdr,
                                sdr_ci=ci.sdr_ci, f_syn=f_syn, f_syn_ci=f_syn_ci, f_syn_count=len(scored),
                                level=float(level)))
    return out
