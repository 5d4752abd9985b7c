"""Faithfulness of other explainers: Synergistic Faithfulness (F_syn), unimodal
insertion / deletion / SRG, and the exact-SII macro-game reference.

Our copy of the F_syn paper (Ky, Ghamizi & Cordy 2026) omits its equations. These
definitions follow the authors' public benchmark code (``src/metrics/faithfulness.py`` and
``src/metrics/shap_sii.py`` of serval-uni-lu/xai-vdoc-benchmark), checked against the
paper's text; docs/architecture.md ("Faithfulness") writes them out. Where we differ from that code:

- top-k ties go to the lower index (the code uses an unordered top-k);
- step 0 of the unimodal deletion curve is clipped like every other step (the code leaves
  it unclipped);
- the macro game shuffles the remaining patches and tokens with a seed (the code does not
  seed), and takes the exact SII over all 2^(2 + chunks) macro coalitions (the code
  approximates it with shapiq at a 300-400 budget).

Grid alpha_k = k / K, k = 0..K. V_k = the round(alpha_k m) patches with the highest score,
T_k = the round(alpha_k n) tokens with the highest score (round half to even, as Python).

    D_k = v(N) - v(N \\ V_k) - v(N \\ T_k) + v(N \\ (V_k + T_k))
    I_k = v(V_k + T_k) - v(V_k) - v(T_k) + v(empty)

Z = max(|v(N) - v(empty)|, eps). F_del = trapz(clip(D / Z, 0, 1)), F_ins likewise,
F_syn = (F_del + F_ins) / 2; also the normalised unclipped and the signed raw F_syn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from multishap.service.math.estimators.coalitions import CoalitionStore, ValueFunction
from multishap.service.math.estimators.weights import sii_weights
from multishap.service.math.validation import ArgumentError, check_game_size, check_int, check_value_fn
from multishap.service import defaults

__all__ = [
    "MacroGameSII", "SynergisticFaithfulness", "UnimodalCurves", "UnimodalFaithfulness", "alpha_grid",
    "macro_game_sii", "macro_players", "synergistic_faithfulness", "top_set", "top_sets", "unimodal_faithfulness",
]


@dataclass(frozen=True)
class SynergisticFaithfulness:
    """F_syn of one explanation: published (clipped), unclipped and raw, with its curves."""

    f_syn: float
    f_ins: float
    f_del: float
    f_syn_unclipped: float
    f_syn_raw: float
    alphas: np.ndarray
    curve_ins: np.ndarray
    curve_del: np.ndarray
    evaluations: int


@dataclass(frozen=True)
class UnimodalCurves:
    """Insertion and deletion areas of one modality, and SRG = insertion - deletion."""

    insertion: float
    deletion: float
    srg: float
    curve_ins: np.ndarray
    curve_del: np.ndarray


@dataclass(frozen=True)
class UnimodalFaithfulness:
    """Visual and textual insertion / deletion metrics of one explanation."""

    visual: UnimodalCurves
    text: UnimodalCurves
    evaluations: int


@dataclass(frozen=True)
class MacroGameSII:
    """Exact SII of (V_k, T_k) in the 8-player macro game at every step, and its area."""

    per_step: np.ndarray
    players: list[list[np.ndarray]]
    auc: float
    alphas: np.ndarray
    evaluations: int


def _check_scores(scores: Sequence[float] | np.ndarray, length: int, name: str) -> np.ndarray:
    arr = np.asarray(scores)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ArgumentError(f"{name} must be a 1-D array of length {length}; got shape {np.shape(scores)}")
    if arr.dtype.kind not in "biuf":
        raise ArgumentError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ArgumentError(f"{name} contains NaN or infinity; every score must be finite")
    return arr


def _validate(
    value_fn: object, m: object, n: object, steps: object, patch_scores: object, token_scores: object
) -> tuple[int, int, int, np.ndarray, np.ndarray]:
    """Checked (m, n, steps, patch scores, token scores) of an explanation to score."""
    check_value_fn(value_fn)
    m, n = check_game_size(m, n)
    steps = check_int("steps", steps, 1, " (points of the alpha grid after 0)")
    return m, n, steps, _check_scores(patch_scores, m, "patch_scores"), _check_scores(token_scores, n, "token_scores")


def _check_eps(eps: float) -> None:
    if not np.isfinite(eps) or eps <= 0:
        raise ArgumentError(f"eps must be a positive number (the normaliser's floor); got {eps!r}")


def alpha_grid(steps: int) -> np.ndarray:
    """alpha_k = k / steps for k = 0..steps."""
    return np.arange(steps + 1) / steps


def top_set(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` highest scores; ties go to the lower index."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    return np.sort(order[:count])


def top_sets(scores: np.ndarray, steps: int) -> list[np.ndarray]:
    """The top round(alpha_k * len) indices at every step (round half to even)."""
    return [top_set(scores, round(a * len(scores))) for a in alpha_grid(steps)]


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)


class _Masks:
    """Builds coalitions over m patches then n tokens from index sets."""

    def __init__(self, m: int, n: int) -> None:
        self.m, self.n = m, n

    def of(self, patches: np.ndarray = (), tokens: np.ndarray = (), invert: bool = False) -> np.ndarray:
        row = np.zeros(self.m + self.n, dtype=bool)
        row[np.asarray(patches, dtype=np.int64)] = True
        row[self.m + np.asarray(tokens, dtype=np.int64)] = True
        return ~row if invert else row


def _evaluate(value_fn: ValueFunction, masks: np.ndarray, max_batch: int) -> tuple[np.ndarray, int]:
    """Values of the (B, N) masks, each distinct coalition evaluated once; and how many were."""
    store = CoalitionStore(value_fn, masks.shape[1], len(masks), max_batch)
    ids = store.register(masks)
    return store.values(ids), store.size


def synergistic_faithfulness(
    value_fn: ValueFunction,
    m: int,
    n: int,
    patch_scores: Sequence[float] | np.ndarray,
    token_scores: Sequence[float] | np.ndarray,
    steps: int = defaults.FAITHFULNESS_STEPS,
    eps: float = defaults.FAITHFULNESS_EPS,
    max_batch: int = defaults.MAX_BATCH,
) -> SynergisticFaithfulness:
    """F_syn of an explanation given as one score per patch and one per token."""
    m, n, steps, a, b = _validate(value_fn, m, n, steps, patch_scores, token_scores)
    _check_eps(eps)
    mk = _Masks(m, n)
    rows = [mk.of(np.arange(m), np.arange(n)), mk.of()]
    for vk, tk in zip(top_sets(a, steps), top_sets(b, steps)):
        rows += [
            mk.of(vk, invert=True),
            mk.of(tokens=tk, invert=True),
            mk.of(vk, tk, invert=True),
            mk.of(vk, tk),
            mk.of(vk),
            mk.of(tokens=tk),
        ]
    values, evaluations = _evaluate(value_fn, np.stack(rows), max_batch)
    v_full, v_empty = values[0], values[1]
    per_step = values[2:].reshape(steps + 1, 6)
    curve_del = v_full - per_step[:, 0] - per_step[:, 1] + per_step[:, 2]
    curve_ins = per_step[:, 3] - per_step[:, 4] - per_step[:, 5] + v_empty
    alphas = alpha_grid(steps)
    z = max(abs(v_full - v_empty), eps)
    f_del = _trapz(np.clip(curve_del / z, 0.0, 1.0), alphas)
    f_ins = _trapz(np.clip(curve_ins / z, 0.0, 1.0), alphas)
    return SynergisticFaithfulness(
        f_syn=(f_del + f_ins) / 2.0,
        f_ins=f_ins,
        f_del=f_del,
        f_syn_unclipped=(_trapz(curve_del / z, alphas) + _trapz(curve_ins / z, alphas)) / 2.0,
        f_syn_raw=_trapz((curve_del + curve_ins) / 2.0, alphas),
        alphas=alphas,
        curve_ins=curve_ins,
        curve_del=curve_del,
        evaluations=evaluations,
    )


def _unimodal(values: np.ndarray, v_full: float, baseline: float, eps: float, alphas: np.ndarray) -> UnimodalCurves:
    z = max(abs(v_full - baseline), eps)
    curve_del = np.clip((values[:, 0] - baseline) / z, 0.0, 1.0)
    curve_ins = np.clip((values[:, 1] - baseline) / z, 0.0, 1.0)
    insertion, deletion = _trapz(curve_ins, alphas), _trapz(curve_del, alphas)
    return UnimodalCurves(insertion, deletion, insertion - deletion, curve_ins, curve_del)


def unimodal_faithfulness(
    value_fn: ValueFunction,
    m: int,
    n: int,
    patch_scores: Sequence[float] | np.ndarray,
    token_scores: Sequence[float] | np.ndarray,
    steps: int = defaults.FAITHFULNESS_STEPS,
    eps: float = defaults.FAITHFULNESS_EPS,
    max_batch: int = defaults.MAX_BATCH,
) -> UnimodalFaithfulness:
    """Visual and textual insertion / deletion / SRG with the other modality kept whole.

    Visual: baseline v(T) (no patch, every token); deletion removes the top patches from
    the full input, insertion adds them to the baseline. Textual: symmetric, baseline v(P).
    """
    m, n, steps, a, b = _validate(value_fn, m, n, steps, patch_scores, token_scores)
    _check_eps(eps)
    mk = _Masks(m, n)
    all_p, all_t = np.arange(m), np.arange(n)
    rows = [mk.of(all_p, all_t), mk.of(tokens=all_t), mk.of(all_p)]
    for vk in top_sets(a, steps):
        rows += [mk.of(vk, invert=True), mk.of(vk, all_t)]
    for tk in top_sets(b, steps):
        rows += [mk.of(tokens=tk, invert=True), mk.of(all_p, tk)]
    values, evaluations = _evaluate(value_fn, np.stack(rows), max_batch)
    v_full, v_text_only, v_image_only = values[:3]
    curves = values[3:].reshape(2, steps + 1, 2)
    alphas = alpha_grid(steps)
    return UnimodalFaithfulness(
        visual=_unimodal(curves[0], v_full, v_text_only, eps, alphas),
        text=_unimodal(curves[1], v_full, v_image_only, eps, alphas),
        evaluations=evaluations,
    )


def macro_players(
    m: int, n: int, vk: np.ndarray, tk: np.ndarray, chunks: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Macro players: V_k, T_k, then ``chunks`` bimodal chunks of the remaining players.

    Each macro player is an int array of micro-player indices (patches 0..m-1, tokens
    m..m+n-1). The remaining patches and tokens are each shuffled and split into
    near-equal consecutive chunks; chunk c of both modalities forms one player.
    """
    rest_p = rng.permutation(np.setdiff1d(np.arange(m), vk))
    rest_t = rng.permutation(np.setdiff1d(np.arange(n), tk))
    players = [np.asarray(vk, dtype=np.int64), m + np.asarray(tk, dtype=np.int64)]
    for cp, ct in zip(np.array_split(rest_p, chunks), np.array_split(rest_t, chunks)):
        players.append(np.concatenate([cp, m + ct]).astype(np.int64))
    return players


def macro_game_sii(
    value_fn: ValueFunction,
    m: int,
    n: int,
    patch_scores: Sequence[float] | np.ndarray,
    token_scores: Sequence[float] | np.ndarray,
    steps: int = defaults.FAITHFULNESS_STEPS,
    chunks: int = defaults.MACRO_CHUNKS,
    seed: int = 0,
    max_batch: int = defaults.MAX_BATCH,
) -> MacroGameSII:
    """Exact SII of the pair (V_k, T_k) in the macro game at every step (the reference
    F_syn should rank-correlate with), and its trapezoid area over alpha."""
    m, n, steps, a, b = _validate(value_fn, m, n, steps, patch_scores, token_scores)
    chunks = check_int("chunks", chunks, 1, " (bimodal chunks of the remaining players)")
    seed = check_int("seed", seed, 0)
    n_macro = 2 + chunks
    codes = np.arange(1 << n_macro)
    membership = ((codes[:, None] >> np.arange(n_macro)) & 1).astype(bool)
    steps_players, rows = [], []
    for k, (vk, tk) in enumerate(zip(top_sets(a, steps), top_sets(b, steps))):
        players = macro_players(m, n, vk, tk, chunks, np.random.default_rng([seed, k]))
        steps_players.append(players)
        reveal = np.zeros((n_macro, m + n), dtype=bool)
        for p, micro in enumerate(players):
            reveal[p, micro] = True
        rows.append(membership.astype(np.int64) @ reveal.astype(np.int64) > 0)
    values, evaluations = _evaluate(value_fn, np.concatenate(rows), max_batch)
    values = values.reshape(steps + 1, 1 << n_macro)

    # SII of macro players 0 and 1: sum over S of the other players of w(|S|) * Delta(S).
    others = codes[(codes & 3) == 0]
    weights = sii_weights(n_macro)[membership[others].sum(axis=1)]
    delta = values[:, others | 3] - values[:, others | 1] - values[:, others | 2] + values[:, others]
    per_step = delta @ weights
    alphas = alpha_grid(steps)
    return MacroGameSII(
        per_step=per_step,
        players=steps_players,
        auc=_trapz(per_step, alphas),
        alphas=alphas,
        evaluations=evaluations,
    )
