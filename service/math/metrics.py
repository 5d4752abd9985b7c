"""MultiSHAP metrics of an interaction matrix and of a dataset of instances.

Per instance (Wang & Wang 2025): total T = sum |Phi_ij|, synergy S = sum max(0, Phi_ij),
suppression P = sum max(0, -Phi_ij), synergy ratio R = S / T (0.5 when T = 0: no
interaction leans neither way). Per dataset: MSR = mean R, SDR = share of instances with
R > 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
from multishap.service.math.validation import ArgumentError

__all__ = ["DatasetMetrics", "InstanceMetrics", "dataset_metrics", "instance_metrics"]


@dataclass(frozen=True)
class InstanceMetrics:
    """Total, synergy and suppression mass of one Phi, and the synergy ratio."""

    total: float
    synergy: float
    suppression: float
    synergy_ratio: float


@dataclass(frozen=True)
class DatasetMetrics:
    """Mean synergy ratio (MSR) and synergy-dominance rate (SDR) over instances."""

    msr: float
    sdr: float
    count: int


def instance_metrics(phi: np.ndarray) -> InstanceMetrics:
    """MultiSHAP metrics of one interaction matrix (any shape; NaN or inf is refused)."""
    phi = np.asarray(phi, dtype=np.float64)
    if phi.size == 0:
        raise ArgumentError("phi is empty: an interaction matrix needs at least one entry")
    if not np.isfinite(phi).all():
        raise ArgumentError("phi contains NaN or infinity; metrics need finite interactions")
    synergy = float(np.maximum(phi, 0.0).sum())
    suppression = float(np.maximum(-phi, 0.0).sum())
    total = synergy + suppression
    ratio = synergy / total if total > 0 else 0.5
    return InstanceMetrics(total=total, synergy=synergy, suppression=suppression, synergy_ratio=ratio)


def dataset_summary(synergy_ratios: Iterable[float]) -> DatasetMetrics:
    """:func:`dataset_metrics`, or NaN MSR and SDR over no instance (a run or job that has finished none yet)."""
    ratios = list(synergy_ratios)
    return dataset_metrics(ratios) if ratios else DatasetMetrics(msr=float("nan"), sdr=float("nan"), count=0)


def dataset_metrics(synergy_ratios: Iterable[float]) -> DatasetMetrics:
    """MSR and SDR of a dataset from its instances' synergy ratios."""
    r = np.asarray(list(synergy_ratios), dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ArgumentError("dataset_metrics needs a non-empty list of synergy ratios")
    if not np.isfinite(r).all() or (r < 0).any() or (r > 1).any():
        raise ArgumentError("synergy ratios must be finite numbers in [0, 1]")
    return DatasetMetrics(msr=float(r.mean()), sdr=float((r > 0.5).mean()), count=int(r.size))
