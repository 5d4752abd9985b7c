"""Percentile-bootstrap confidence intervals of a dataset's MSR and SDR.

Instances are resampled with replacement ``n_boot`` times (numpy's default generator seeded
with ``seed``, so the intervals are bit-identical for a seed); each resample's MSR (mean synergy
ratio) and SDR (share of ratios > 0.5) are computed, and the interval at ``level`` is the pair of
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles (numpy's linear interpolation) of those
values. The point estimates are ``dataset_metrics``'s, on the instances as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from multishap.service.math.metrics import dataset_metrics
from multishap.service.math.validation import ArgumentError, check_int

_ROWS_PER_CHUNK = 1 << 22


@dataclass(frozen=True)
class BootstrapMetrics:
    """MSR and SDR with their percentile-bootstrap intervals (low, high)."""

    msr: float
    msr_ci: tuple[float, float]
    sdr: float
    sdr_ci: tuple[float, float]
    count: int
    n_boot: int
    level: float
    seed: int


def bootstrap_dataset_metrics(
    synergy_ratios: Iterable[float], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> BootstrapMetrics:
    """MSR and SDR of the instances' synergy ratios, each with a percentile-bootstrap interval."""
    n_boot = check_int("n_boot", n_boot, 1, " (bootstrap resamples)")
    seed = check_int("seed", seed, 0, " (the resampling seed)")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise ArgumentError(f"level must be a number strictly between 0 and 1 (the interval's coverage); got {level!r}")
    try:
        ratios = list(synergy_ratios)
    except TypeError as exc:
        raise ArgumentError("synergy_ratios must be an iterable of numbers in [0, 1]") from exc
    point = dataset_metrics(ratios)
    r = np.asarray(ratios, dtype=np.float64)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _ROWS_PER_CHUNK // r.size)
    msr, sdr = np.empty(n_boot), np.empty(n_boot)
    for start in range(0, n_boot, per_chunk):
        stop = min(n_boot, start + per_chunk)
        sample = r[rng.integers(0, r.size, size=(stop - start, r.size))]
        msr[start:stop] = sample.mean(axis=1)
        sdr[start:stop] = (sample > 0.5).mean(axis=1)
    q = [(1 - level) / 2, (1 + level) / 2]
    msr_lo, msr_hi = np.quantile(msr, q)
    sdr_lo, sdr_hi = np.quantile(sdr, q)
    return BootstrapMetrics(
        msr=point.msr,
        msr_ci=(float(msr_lo), float(msr_hi)),
        sdr=point.sdr,
        sdr_ci=(float(sdr_lo), float(sdr_hi)),
        count=point.count,
        n_boot=n_boot,
        level=float(level),
        seed=seed,
    )
