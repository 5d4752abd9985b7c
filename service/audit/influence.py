"""Granger-style modality influence: how much one modality's explanation depends on the other.

For a value function over ``m`` patches and ``n`` tokens (``value_fn(masks) -> values``,
patches first, True = present), four first-order Shapley vectors are computed, each over the
players of one modality while the other modality is held fixed, with the game's own masking as
the baseline (a player absent = masked the way ``value_fn`` masks it):

* ``patch_shapley_with_text``: patches as players, every token present;
* ``patch_shapley_without_text``: patches as players, every token masked;
* ``token_shapley_with_image`` / ``token_shapley_without_image``: likewise for tokens.

Agreement of two explanations ``x, y`` (same length) is a sign-aware Spearman agreement:
entries with ``|x_i| <= 1e-9 * max|x|`` are set to 0 (float noise of exact enumeration), a zero
reference entry is appended to both vectors (so the sign of each entry is part of its rank), and
``agreement = (1 + rho) / 2`` with ``rho`` Spearman's rho of the two augmented vectors. When both
vectors vanish (all zero) the agreement is 1; when exactly one vanishes it is 0 (the explanation
disappeared). Identical or positively proportional vectors agree 1; reversed ones 0.

``image_on_text = 1 - agreement(token_shapley_with_image, token_shapley_without_image)``: the
influence of removing the image on the text explanation; ``text_on_image`` likewise for patches.
Both are in [0, 1]: 0 for an additive game ``v = f(image) + g(text)``; 1 on the partner both ways
for an AND game of one patch and one token (its explanation vanishes when the partner is masked).

``redundancy_flag`` is True when either modality alone already gives (almost) v(full):
``|v(image only) - v(full)|`` or ``|v(text only) - v(full)|`` is at most
``tol * max(|v(full) - v(empty)|, 1e-12)`` (``tol`` defaults to 0.05). F_syn is then 0 for
every explainer, so a low F_syn there says nothing about the explainer.

Each of the four vectors gets ``budget // 4`` coalitions: a modality of ``k`` players is
enumerated exactly when ``2^k`` fits that share (and ``k <= 26``), otherwise its Shapley values
are estimated by the ``kernel`` estimator with the given seed (deterministic for a seed). The
budget must pay for that in every part: :func:`min_influence_budget` is the fewest it takes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from multishap.service.audit.ranks import spearman
from multishap.service.math.estimators import MAX_EXACT_PLAYERS, estimate_interactions
from multishap.service.math.estimators.coalitions import ValueFunction, check_values
from multishap.service.math.estimators.exact import exact_estimate
from multishap.service.math.estimators.kernel import min_budget as kernel_min_budget
from multishap.service.math.validation import ArgumentError, check_game_size, check_int, check_value_fn

DEFAULT_BUDGET = 4 * (1 << 12)
DEFAULT_TOL = 0.05
MIN_BUDGET = 16
_ZERO_REL = 1e-9
_TINY = 1e-12


@dataclass(frozen=True)
class ModalityInfluence:
    """The four one-modality Shapley vectors, the two influences and the redundancy flag."""

    patch_shapley_with_text: np.ndarray
    patch_shapley_without_text: np.ndarray
    token_shapley_with_image: np.ndarray
    token_shapley_without_image: np.ndarray
    image_on_text: float
    text_on_image: float
    redundancy_flag: bool
    v_full: float
    v_empty: float
    v_image_only: float
    v_text_only: float
    exact: bool
    evaluations: int


def _snap(x: np.ndarray) -> np.ndarray:
    """Entries within 1e-9 of the largest magnitude set to exactly 0."""
    scale = float(np.max(np.abs(x))) if x.size else 0.0
    return np.where(np.abs(x) <= _ZERO_REL * scale, 0.0, x)


def agreement(x: np.ndarray, y: np.ndarray) -> float:
    """Sign-aware Spearman agreement in [0, 1] of two explanations (see the module docstring)."""
    x, y = _snap(np.asarray(x, dtype=np.float64)), _snap(np.asarray(y, dtype=np.float64))
    x_zero, y_zero = not x.any(), not y.any()
    if x_zero or y_zero:
        return 1.0 if x_zero and y_zero else 0.0
    rho = spearman(np.append(x, 0.0), np.append(y, 0.0))
    return float(np.clip((1.0 + rho) / 2.0, 0.0, 1.0))


def _one_modality_shapley(
    value_fn: ValueFunction, m: int, n: int, players: str, others_present: bool, budget: int, seed: int
) -> tuple[np.ndarray, bool, int]:
    """First-order Shapley values of one modality's players with the other held present or masked."""
    k = m if players == "patches" else n
    other = np.full(n if players == "patches" else m, others_present)

    def restricted(masks: np.ndarray) -> np.ndarray:
        fixed = np.broadcast_to(other, (masks.shape[0], other.size))
        full = np.hstack([masks, fixed] if players == "patches" else [fixed, masks])
        return check_values(value_fn(full), masks.shape[0])

    if k <= MAX_EXACT_PLAYERS and (1 << k) <= budget:
        est = exact_estimate(restricted, k, 0)
        return est.shapley, True, est.evaluations
    est = estimate_interactions(restricted, k - 1, 1, method="kernel", budget=budget, seed=seed)
    return est.shapley, False, est.evaluations


def min_influence_budget(m: int, n: int) -> int:
    """The fewest coalitions :func:`modality_influence` takes on ``m`` patches and ``n`` tokens: four times the
    largest share one modality's game needs (``2^k`` to enumerate it, or the kernel estimator's first step)."""
    def share(k: int) -> int:
        needs = [1 << k] if k <= MAX_EXACT_PLAYERS else []
        if k >= 2:
            needs.append(kernel_min_budget(k - 1, 1))
        return min(needs)

    return max(MIN_BUDGET, 4 * max(share(m), share(n)))


def modality_influence(
    value_fn: ValueFunction, m: int, n: int, budget: int = DEFAULT_BUDGET, seed: int = 0, tol: float = DEFAULT_TOL
) -> ModalityInfluence:
    """Influence of removing each modality on the other's first-order explanation, and redundancy."""
    check_value_fn(value_fn)
    m, n = check_game_size(m, n)
    budget = check_int("budget", budget, MIN_BUDGET, " (coalitions for the four one-modality explanations)")
    if budget < (needed := min_influence_budget(m, n)):
        raise ArgumentError(f"budget {budget} is too small for modality influence on {m} patches and {n} tokens: "
                            f"it needs at least {needed} coalitions")
    seed = check_int("seed", seed, 0, " (the sampling seed)")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
        raise ArgumentError(f"tol must be a number in [0, 1) (the redundancy tolerance); got {tol!r}")
    share = budget // 4
    runs = {
        (players, present): _one_modality_shapley(value_fn, m, n, players, present, share, seed)
        for players in ("patches", "tokens")
        for present in (True, False)
    }
    anchors = np.zeros((4, m + n), dtype=bool)
    anchors[1] = True
    anchors[2, :m] = True
    anchors[3, m:] = True
    v_empty, v_full, v_image, v_text = (float(v) for v in check_values(value_fn(anchors), 4))
    limit = tol * max(abs(v_full - v_empty), _TINY)
    patches_with, patches_without = runs["patches", True][0], runs["patches", False][0]
    tokens_with, tokens_without = runs["tokens", True][0], runs["tokens", False][0]
    return ModalityInfluence(
        patch_shapley_with_text=patches_with,
        patch_shapley_without_text=patches_without,
        token_shapley_with_image=tokens_with,
        token_shapley_without_image=tokens_without,
        image_on_text=1.0 - agreement(tokens_with, tokens_without),
        text_on_image=1.0 - agreement(patches_with, patches_without),
        redundancy_flag=bool(abs(v_image - v_full) <= limit or abs(v_text - v_full) <= limit),
        v_full=v_full,
        v_empty=v_empty,
        v_image_only=v_image,
        v_text_only=v_text,
        exact=all(run[1] for run in runs.values()),
        evaluations=sum(run[2] for run in runs.values()) + 4,
    )
