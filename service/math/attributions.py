"""Built-in black-box explainers whose attributions F_syn can score.

An explanation here is one score per patch and one per token, the same form as any
user-supplied attribution (Grad-CAM, attention rollout, LRP...). MultiSHAP-derived scores
come from Phi's rows (patches) and columns (tokens): ``signed`` sums (synergy minus
suppression) are the default, because F_syn rewards them most on
``bench/faithfulness.py`` (0.47 against 0.42 for positive-part and 0.32 for absolute
sums); ``positive`` and ``absolute`` are offered for comparison.
"""

from __future__ import annotations

import numpy as np

from multishap.service.math.games import MobiusGame
from multishap.service.math.validation import ArgumentError

MULTISHAP_MODES = ("signed", "positive", "absolute")
# The explainers a Faithfulness request may name instead of giving its own scores.
BUILT_IN_EXPLAINERS = ("multishap", "random", "shapley")


def random_scores(m: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random scores, seeded: the chance baseline."""
    rng = np.random.default_rng([seed, m, n])
    return rng.random(m), rng.random(n)


def multishap_scores(phi: np.ndarray, mode: str = "signed") -> tuple[np.ndarray, np.ndarray]:
    """Patch and token scores from Phi's row and column sums of the chosen transform."""
    phi = np.asarray(phi, dtype=np.float64)
    if phi.ndim != 2:
        raise ArgumentError(f"phi must be an (m, n) matrix; got shape {phi.shape}")
    transforms = {"positive": lambda x: np.maximum(x, 0.0), "signed": lambda x: x, "absolute": np.abs}
    if mode not in transforms:
        raise ArgumentError(f"mode must be one of {MULTISHAP_MODES}; got {mode!r}")
    t = transforms[mode](phi)
    return t.sum(axis=1), t.sum(axis=0)


def shapley_scores(shapley: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """First-order Shapley values split into patch and token scores."""
    shapley = np.asarray(shapley, dtype=np.float64)
    return shapley[:m], shapley[m:]


def oracle_scores(game: MobiusGame) -> tuple[np.ndarray, np.ndarray]:
    """Scores from the game's own cross-modal terms: each player gets the summed
    coefficients of the unanimity terms that span both modalities and contain it, so
    synergistic players rank first and redundant ones (negative terms) last."""
    scores = np.zeros(game.m + game.n)
    for players, coef in game.terms:
        if min(players) < game.m <= max(players):
            scores[list(players)] += coef
    return scores[: game.m], scores[game.m :]
