"""Stability of an explanation under re-explanation: estimator seeds and small image perturbations.

Contract: ``explain_fn(image, seed) -> (phi, stderr)`` explains ``image`` (a uint8 (H, W) or
(H, W, 3) array) with estimator seed ``seed`` and returns the interaction matrix and its standard
errors (same shape; ``stderr`` may be ``None`` for exact results). The reference is
``explain_fn(image, seed)``. Each perturbation is repeated ``repeats`` times:

* ``seed``: the unchanged image re-explained with estimator seed ``seed + 1 + k`` (k = repeat);
* ``jpeg``: the image re-encoded as JPEG at a quality drawn from 50..95 (PIL), same estimator seed;
* ``noise``: Gaussian pixel noise of standard deviation 8 (of 255) added, same estimator seed;
* ``shift``: the image translated by a random nonzero offset of at most 3 pixels per axis (edges
  replicated), same estimator seed.

JPEG qualities and shift offsets are drawn without replacement from
``numpy.random.default_rng([seed, code])`` (one code per perturbation name), so repeats are distinct
images (up to 46 qualities and 48 offsets); noise for repeat k is drawn from
``default_rng([seed, code, k])``. A seed fixes every perturbed image whatever the list's order.

Apart from sampling stderr: an entry of the reference whose ``|phi|`` is within ``z`` standard
errors of 0 (``|phi| <= z * stderr``, default ``z = 2``) cannot be told apart from 0 by the
estimator, so it is left out of every comparison; with ``z = 0`` only exact zeros are left out.
Over the kept entries, ``rank_correlation`` is Spearman's rho between the flattened perturbed Φ and
the reference Φ (1 when they are equal, 0 when either is constant otherwise), and ``topk_overlap``
is the share of the reference's ``top_k`` largest ``|phi|`` entries that are also among the
perturbed Φ's ``top_k`` (default ``top_k`` = 10% of the kept entries, at least 1; ties broken by
position). ``per_perturbation`` maps each name to the means over its repeats, and the two headline
numbers are the means over perturbations. With fewer than 2 kept entries all numbers are NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np

from multishap.service.audit.perturb import check_image, perturbed_images
from multishap.service.audit.ranks import spearman
from multishap.service.math.validation import ArgumentError, check_int

PERTURBATIONS = ("seed", "jpeg", "noise", "shift")
_CODES = {name: code for code, name in enumerate(PERTURBATIONS)}
ExplainFunction = Callable[[np.ndarray, int], tuple[np.ndarray, Optional[np.ndarray]]]


@dataclass(frozen=True)
class PerturbationStability:
    """Mean rank correlation and top-k overlap over one perturbation's repeats."""

    rank_correlation: float
    topk_overlap: float


@dataclass(frozen=True)
class StabilityResult:
    """Agreement of perturbed re-explanations with the reference, over the entries resolved beyond z stderr."""

    rank_correlation: float
    topk_overlap: float
    per_perturbation: dict[str, PerturbationStability]
    top_k: int
    kept_entries: int
    total_entries: int
    repeats: int
    z: float


def _explain(
    explain_fn: ExplainFunction, image: np.ndarray, seed: int, shape: Optional[tuple]
) -> tuple[np.ndarray, np.ndarray]:
    """Call explain_fn and check its (phi, stderr) reply."""
    reply = explain_fn(image, seed)
    if not isinstance(reply, tuple) or len(reply) != 2:
        raise ArgumentError("explain_fn must return a (phi, stderr) pair")
    phi = np.asarray(reply[0], dtype=np.float64)
    stderr = np.zeros_like(phi) if reply[1] is None else np.asarray(reply[1], dtype=np.float64)
    if phi.size == 0 or not np.isfinite(phi).all():
        raise ArgumentError("explain_fn must return a non-empty phi of finite numbers")
    if stderr.shape != phi.shape or np.isnan(stderr).any() or (stderr < 0).any():
        raise ArgumentError("explain_fn's stderr must match phi's shape and hold non-negative numbers")
    if shape is not None and phi.shape != shape:
        raise ArgumentError(f"explain_fn returned phi of shape {phi.shape}, not the reference's {shape}")
    return phi, stderr


def _top(values: np.ndarray, k: int) -> set[int]:
    """Positions of the k largest |values|, ties broken by position."""
    return set(np.argsort(-np.abs(values), kind="stable")[:k].tolist())


def _compare(reference: np.ndarray, other: np.ndarray, k: int) -> tuple[float, float]:
    """Spearman's rho and top-k overlap of two vectors of kept entries."""
    rho = 1.0 if np.array_equal(reference, other) else spearman(reference, other)
    rho = 0.0 if math.isnan(rho) else rho
    return rho, len(_top(reference, k) & _top(other, k)) / k


def _check_perturbations(perturbations: object) -> tuple[str, ...]:
    """The perturbation names, or ArgumentError for an unknown, repeated or empty list."""
    if isinstance(perturbations, str) or not isinstance(perturbations, Sequence) or not perturbations:
        raise ArgumentError(f"perturbations must be a non-empty list of names from {PERTURBATIONS}")
    names = tuple(perturbations)
    unknown = [p for p in names if p not in PERTURBATIONS]
    if unknown or len(set(names)) != len(names):
        raise ArgumentError(f"perturbations must name each of {PERTURBATIONS} at most once; got {list(names)}")
    return names


def stability(
    explain_fn: ExplainFunction,
    perturbations: Sequence[str] = PERTURBATIONS,
    repeats: int = 5,
    seed: int = 0,
    *,
    image: np.ndarray,
    top_k: Optional[int] = None,
    z: float = 2.0,
) -> StabilityResult:
    """Rank correlation and top-k overlap of Φ re-explained under each perturbation, against the reference."""
    if not callable(explain_fn):
        raise ArgumentError("explain_fn must be callable: (image, seed) -> (phi, stderr)")
    names = _check_perturbations(perturbations)
    repeats = check_int("repeats", repeats, 1, " (re-explanations per perturbation)")
    seed = check_int("seed", seed, 0, " (the estimator and perturbation seed)")
    if top_k is not None:
        top_k = check_int("top_k", top_k, 1, " (entries compared by top-k overlap)")
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not 0 <= z < math.inf:
        raise ArgumentError(
            f"z must be a finite number >= 0 (standard errors from 0 below which entries are ignored); got {z!r}"
        )
    image = check_image(image)
    phi0, se0 = _explain(explain_fn, image, seed, None)
    kept = (np.abs(phi0) > z * se0).ravel()
    n_kept = int(kept.sum())
    k = min(top_k, n_kept) if top_k is not None else max(1, math.ceil(0.1 * n_kept))
    per: dict[str, PerturbationStability] = {}
    for name in names:
        scores = []
        images = [] if name == "seed" else perturbed_images(name, image, seed, _CODES[name], repeats)
        for rep in range(repeats):
            if name == "seed":
                phi, _ = _explain(explain_fn, image, seed + 1 + rep, phi0.shape)
            else:
                phi, _ = _explain(explain_fn, images[rep], seed, phi0.shape)
            if n_kept >= 2:
                scores.append(_compare(phi0.ravel()[kept], phi.ravel()[kept], k))
        rho, overlap = np.mean(scores, axis=0) if scores else (math.nan, math.nan)
        per[name] = PerturbationStability(rank_correlation=float(rho), topk_overlap=float(overlap))
    return StabilityResult(
        rank_correlation=float(np.mean([p.rank_correlation for p in per.values()])),
        topk_overlap=float(np.mean([p.topk_overlap for p in per.values()])),
        per_perturbation=per,
        top_k=k,
        kept_entries=n_kept,
        total_entries=int(phi0.size),
        repeats=repeats,
        z=float(z),
    )
