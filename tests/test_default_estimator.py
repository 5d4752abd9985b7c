"""The default samplers: `auto` runs `pilot` (short runs of `kernel` and `controlled`, then the
better), or `controlled` where pilots do not fit. Their accuracy against exact truth next to
Algorithm 1's at the same budget, the calibration of their standard errors, and their contract
(budget, determinism whatever the batch, cost budgets, BII)."""

from __future__ import annotations


import numpy as np
import pytest

from multishap.service.math.costs import CostModel
from multishap.service.math.estimators import estimate_interactions
from multishap.service.math.estimators.exact import exact_estimate
from multishap.service.math.estimators.registry import AUTO_SAMPLER, choose_method
from multishap.service.math.games import TabulatedGame, make_game

SEEDS = range(6)


def truth(game, m: int, n: int, index: str = "SII") -> np.ndarray:
    closed = game.interactions(index)
    return closed if closed is not None else exact_estimate(game, m, n, index).phi


def relative_error(phi: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(phi - reference) / np.linalg.norm(reference))


def errors_and_z(games, m: int, n: int, method: str, budget: int, index: str = "SII") -> tuple[float, float]:
    """Mean relative error over seeds, and RMS of (estimate - truth) / stderr over entries and seeds."""
    errors, z = [], []
    for seed, (game, reference) in enumerate(games):
        est = estimate_interactions(game, m, n, method=method, budget=budget, seed=seed, index=index)
        assert est.evaluations <= budget
        errors.append(relative_error(est.phi, reference))
        keep = np.isfinite(est.stderr) & (est.stderr > 0)
        z.append((est.phi - reference)[keep] / est.stderr[keep])
    return float(np.mean(errors)), float(np.sqrt(np.mean(np.concatenate(z) ** 2)))


def test_auto_runs_sparse_recovery_with_the_pilot_sampler_behind_it():
    assert AUTO_SAMPLER == "sparse"
    assert choose_method(10, 6, 1000) == "sparse" and choose_method(4, 3, 1 << 7) == "exact"
    assert choose_method(10, 6, 1000, nested=True) == "controlled"
    game = make_game("mlp", 10, 6, 0)
    est = estimate_interactions(game, 10, 6, budget=2000, seed=0)
    # A dense game: the sparse probe gives up and pilot estimates the game on the budget left.
    assert est.method == "sparse" and est.evaluations <= 2000


@pytest.mark.parametrize("family", ["unanimity-low", "unanimity-high", "mlp", "redundant"])
def test_more_accurate_than_algorithm_1_at_the_same_budget(family):
    m, n, budget = 10, 6, 16_000
    games = [(g, truth(g, m, n)) for g in (make_game(family, m, n, s) for s in range(4))]
    ours, _ = errors_and_z(games, m, n, "auto", budget)
    alg1, _ = errors_and_z(games, m, n, "multishap", budget)
    assert ours <= alg1, (ours, alg1)


@pytest.mark.parametrize("method", ["controlled", "pilot"])
def test_standard_errors_are_calibrated_on_a_smooth_game(method):
    m, n = 10, 6
    games = [(g, truth(g, m, n)) for g in (make_game("mlp", m, n, s) for s in SEEDS)]
    for budget in (1000, 8000):
        _, z = errors_and_z(games, m, n, method, budget)
        assert 0.75 <= z <= 1.35, (budget, z)


def test_bii_against_enumeration():
    m, n, budget = 10, 6, 4000
    games = [(g, truth(g, m, n, "BII")) for g in (make_game("bilinear", m, n, s) for s in SEEDS)]
    ours, z = errors_and_z(games, m, n, "controlled", budget, "BII")
    alg1, _ = errors_and_z(games, m, n, "multishap", budget, "BII")
    assert ours <= alg1 * 1.05 and ours < 0.3, (ours, alg1)
    assert 0.75 <= z <= 1.35, z


@pytest.mark.parametrize("method, m, n, budget", [("controlled", 49, 10, 3000), ("pilot", 10, 6, 8000)])
def test_within_budget_and_deterministic_whatever_the_batch(method, m, n, budget):
    game = make_game("unanimity-low", m, n, 1)
    scored: list[bytes] = []

    def counted(masks):
        scored.extend(row.tobytes() for row in np.packbits(masks, axis=1))
        return game(masks)

    a = estimate_interactions(counted, m, n, method=method, budget=budget, seed=5, max_batch=7)
    b = estimate_interactions(game, m, n, method=method, budget=budget, seed=5, max_batch=4096)
    c = estimate_interactions(game, m, n, method=method, budget=budget, seed=6)
    # Each coalition scored once (the pilots share one memo), all of them within the budget.
    assert a.evaluations == b.evaluations == len(scored) == len(set(scored)) <= budget
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert not np.array_equal(a.phi, c.phi)


def test_a_cost_budget_counts_encoder_passes():
    base = make_game("bilinear", 10, 6, 0)
    encodes = CostModel(unit="encoder passes", image_encode=1.0, text_encode=1.0, coalition=0.0)

    class Priced:
        costs = encodes

        def __call__(self, masks):
            return base(masks)

    est = estimate_interactions(Priced(), 10, 6, method="controlled", budget=600, seed=0, budget_unit="cost")
    plain = estimate_interactions(base, 10, 6, method="controlled", budget=600, seed=0)
    # 600 encoder passes buy many more coalitions than 600 coalitions do.
    assert plain.evaluations <= 600 < est.evaluations
    assert relative_error(est.phi, truth(base, 10, 6)) < relative_error(plain.phi, truth(base, 10, 6))


# --- the real shipped model -----------------------------------------------------------------

CAPTION = "a cat on a sunny couch"


@pytest.fixture(scope="module")
def real_game() -> TabulatedGame:
    """The zero-shot dual encoder on chelsea, 2x3 grid: every masked image and text encoded once."""
    pytest.importorskip("torch")
    from hf_models import zeroshot_table_game

    return zeroshot_table_game(2, 3, CAPTION)


@pytest.mark.slow
def test_real_model_game_against_exact_truth(real_game):
    g = real_game
    assert g.m == 6 and 4 <= g.n <= 8
    reference = g.interactions("SII")
    games = [(g, reference)] * 6
    budget = (1 << (g.m + g.n)) // 4
    ours, z = errors_and_z(games, g.m, g.n, "controlled", budget)
    alg1, _ = errors_and_z(games, g.m, g.n, "multishap", budget)
    assert ours <= alg1 and ours < 0.5, (ours, alg1)
    assert 0.7 <= z <= 1.4, z
