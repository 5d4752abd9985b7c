"""The `sparse` estimator: exact recovery of sparse games, fallback on dense ones, budget and determinism."""

import numpy as np
import pytest

from multishap.service.math.estimators.exact import exact_estimate
from multishap.service.math.estimators.kernel import kernel_estimate
from multishap.service.math.estimators.kernel import min_budget as kernel_min_budget
from multishap.service.math.estimators.sparse import SPARSE, interactions, predict, sparse_estimate, sparse_recover
from multishap.service.math.games import MobiusGame, make_game


class Counting:
    """A value function that records every distinct coalition it is asked for."""

    def __init__(self, game) -> None:
        self.game = game
        self.seen: set[bytes] = set()
        self.calls = 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.seen.update(r.tobytes() for r in np.packbits(masks, axis=1))
        return self.game(masks)


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("index", ["SII", "BII"])
def test_recovers_small_sparse_games_exactly(seed, index):
    game = make_game("unanimity-low", 8, 6, seed)
    est, report = sparse_recover(game, 8, 6, 3000, seed, index)
    assert report.outcome == "recovered"
    np.testing.assert_allclose(est.phi, game.interactions(index), atol=1e-10)
    np.testing.assert_allclose(est.shapley, game.shapley(), atol=1e-10)
    assert est.method == "sparse" and est.index == index
    assert np.all(est.stderr < 1e-6)
    assert sorted(p for p, _ in report.terms if p) == sorted(p for p, _ in game.terms)


def test_recovers_the_7x7x10_sparse_game_cheaply():
    game = make_game("unanimity-low", 49, 10, 0)
    counting = Counting(game)
    est, report = sparse_recover(counting, 49, 10, 10_000, 0)
    assert report.outcome == "recovered"
    assert rel(est.phi, game.interactions("SII")) < 1e-10
    assert est.evaluations == len(counting.seen) < 4_000
    assert est.v_full == pytest.approx(game(np.ones((1, 59), dtype=bool))[0])
    assert est.v_empty == pytest.approx(game(np.zeros((1, 59), dtype=bool))[0])


def test_float32_scores_are_recovered_to_their_precision():
    game = make_game("unanimity-low", 49, 10, 3)
    est, report = sparse_recover(lambda x: game(x).astype(np.float32), 49, 10, 10_000, 3)
    assert report.outcome == "recovered"
    assert rel(est.phi, game.interactions("SII")) < 1e-6


@pytest.mark.parametrize("family", ["mlp", "bilinear"])
def test_dense_games_fall_back_to_the_dense_estimator_on_the_budget_left(family):
    game = make_game(family, 10, 6, 1)
    est, report = sparse_recover(game, 10, 6, 3000, 3, dense=kernel_estimate, dense_min_budget=kernel_min_budget)
    assert report.outcome == "dense probe" and report.sparse_evaluations <= 4 + 0.05 * 3000
    # The fallback is the dense estimator, run on what the probe left, reading scored coalitions from memory.
    left = 3000 - report.sparse_evaluations
    np.testing.assert_array_equal(est.phi, kernel_estimate(game, 10, 6, left, 3).phi)
    assert est.method == "sparse" and est.budget == 3000
    truth = exact_estimate(game, 10, 6).phi
    assert rel(est.phi, truth) <= 1.15 * rel(kernel_estimate(game, 10, 6, 3000, 3).phi, truth)


def test_a_missed_cancellation_is_caught_by_verification():
    # {0,1} and {0,1,2} cancel in every probe node that holds both; held-out coalitions see the difference.
    game = MobiusGame(5, 5, (((0, 1), 1.0), ((0, 1, 2), -1.0), ((3, 5), 0.5)))
    outcomes = set()
    for seed in range(12):
        est, report = sparse_recover(game, 5, 5, 2000, seed)
        outcomes.add(report.outcome)
        # Either exact, or the dense fallback on the residual, which enumerates every coalition here.
        np.testing.assert_allclose(est.phi, game.interactions("SII"), atol=1e-9)
    assert {"recovered", "verification"} <= outcomes


def test_parked_nodes_go_to_the_dense_estimator_in_the_residual_game():
    game = make_game("unanimity-high", 49, 10, 0)
    budget = 4000
    counting = Counting(game)
    est, report = sparse_recover(counting, 49, 10, budget, 0, dense=kernel_estimate,
                                 dense_min_budget=kernel_min_budget)
    assert report.outcome == "budget" and len(report.terms) > 30
    assert len(counting.seen) <= budget
    found = list(report.terms)
    truth = dict(game.terms)
    for players, coef in found:  # the terms found before parking are the game's own
        assert coef == pytest.approx(truth[players], abs=1e-10)
    rest = kernel_estimate(lambda x: game(x) - predict(found, x), 49, 10, budget - report.sparse_evaluations, 0)
    np.testing.assert_allclose(est.phi, rest.phi + interactions(found, 49, 10, "SII"), atol=1e-12)
    kernel_alone = kernel_estimate(game, 49, 10, budget, 0).phi
    assert rel(est.phi, game.interactions("SII")) < 0.7 * rel(kernel_alone, game.interactions("SII"))


@pytest.mark.parametrize("family,m,n,budget", [("unanimity-low", 49, 10, 3000), ("unanimity-high", 49, 10, 3000),
                                               ("mlp", 10, 6, 1500), ("unanimity-low", 8, 6, 200)])
def test_never_exceeds_the_budget(family, m, n, budget):
    game = make_game(family, m, n, 0)
    counting = Counting(game)
    reported = []
    est = sparse_estimate(counting, m, n, budget, 0, "SII", 256, lambda done, total: reported.append((done, total)))
    assert len(counting.seen) <= budget
    assert est.evaluations == len(counting.seen)
    done = [d for d, _ in reported]
    assert done == sorted(done) and done[-1] <= budget and {t for _, t in reported} == {budget}


@pytest.mark.parametrize("family,m,n", [("unanimity-low", 49, 10), ("mlp", 10, 6)])
def test_same_result_whatever_max_batch(family, m, n):
    game = make_game(family, m, n, 2)
    small = Counting(game)
    a = sparse_estimate(small, m, n, 3000, 5, "SII", 7)
    b = sparse_estimate(game, m, n, 3000, 5, "SII", 4096)
    np.testing.assert_array_equal(a.phi, b.phi)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    assert a.evaluations == b.evaluations
    assert small.calls > 10


def test_min_budget_runs_and_registry_contract():
    game = make_game("mlp", 3, 2, 0)
    need = SPARSE.min_budget(3, 2)
    est = SPARSE.estimate(game, 3, 2, need, 0, "SII", 64, None)
    assert est.phi.shape == (3, 2) and np.all(np.isfinite(est.phi))
    assert SPARSE.name == "sparse" and set(SPARSE.indices) == {"SII", "BII"}
