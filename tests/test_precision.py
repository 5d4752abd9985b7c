"""Estimating to a precision target: rounds stop once every standard error is small enough,
nothing is scored twice, the budget holds, and the result is deterministic; budget units."""

from __future__ import annotations

import numpy as np
import pytest

from multishap.service.math.costs import CostModel
from multishap.service.math.estimators import estimate_interactions
from multishap.service.math.estimators.precision import reached
from multishap.service.math.games import make_game
from multishap.service.math.validation import ArgumentError

M, N = 10, 6


class Counting:
    """A game that counts every coalition it scores, repeats included."""

    def __init__(self, game) -> None:
        self.game = game
        self.rows = 0
        self.distinct: set[bytes] = set()

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.rows += len(masks)
        self.distinct.update(row.tobytes() for row in np.packbits(masks, axis=1))
        return self.game(masks)


def test_stops_early_once_the_target_is_reached():
    game = Counting(make_game("bilinear", M, N, 0))
    budget = 16_000
    loose = estimate_interactions(game, M, N, budget=budget, seed=0).stderr.max()
    target = 4 * loose
    est = estimate_interactions(game := Counting(game.game), M, N, budget=budget, seed=0, target_stderr=target)
    assert est.target_stderr == target and est.target_stderr_reached is True
    assert est.stderr.max() <= target
    assert est.evaluations < budget / 2
    # Every coalition scored once over all rounds, and evaluations counts them.
    assert game.rows == len(game.distinct) == est.evaluations


def test_says_so_when_the_budget_runs_out():
    game = Counting(make_game("mlp", M, N, 1))
    est = estimate_interactions(game, M, N, budget=3000, seed=2, target_stderr=1e-9)
    assert est.target_stderr_reached is False and not reached(est, 1e-9)
    assert est.evaluations == len(game.distinct) <= 3000
    # Running out of budget, the rounds end where one run at the full budget would.
    single = estimate_interactions(make_game("mlp", M, N, 1), M, N, method="controlled", budget=3000, seed=2)
    np.testing.assert_array_equal(est.phi, single.phi)
    assert est.evaluations == single.evaluations


def test_deterministic_whatever_the_batch_and_progress_is_monotone():
    game = make_game("unanimity-low", M, N, 3)
    seen: list[tuple[int, int]] = []
    a = estimate_interactions(game, M, N, budget=8_000, seed=4, target_stderr=0.01, max_batch=17,
                              progress=lambda done, total: seen.append((done, total)))
    b = estimate_interactions(game, M, N, budget=8_000, seed=4, target_stderr=0.01)
    np.testing.assert_array_equal(a.phi, b.phi)
    assert a.evaluations == b.evaluations and a.target_stderr_reached == b.target_stderr_reached
    done = [d for d, _ in seen]
    assert done == sorted(done) and done[-1] == a.evaluations and {t for _, t in seen} == {8_000}


def test_without_a_target_the_fields_stay_empty():
    est = estimate_interactions(make_game("mlp", M, N, 0), M, N, budget=2000, seed=0)
    assert est.target_stderr is None and est.target_stderr_reached is None


def test_bad_targets_and_methods_are_refused():
    game = make_game("mlp", M, N, 0)
    for bad in (0, -1.0, float("nan"), float("inf"), "0.1", True):
        with pytest.raises(ArgumentError, match="target_stderr"):
            estimate_interactions(game, M, N, budget=2000, target_stderr=bad)
    with pytest.raises(ArgumentError, match="nest"):
        estimate_interactions(game, M, N, method="kernel", budget=2000, target_stderr=0.1)


def test_budget_unit_cost_counts_the_value_functions_unit():
    base = make_game("bilinear", M, N, 0)

    class Priced:
        costs = CostModel(unit="encoder passes", image_encode=1.0, text_encode=1.0, coalition=0.0)

        def __call__(self, masks):
            return base(masks)

    by_cost = estimate_interactions(Priced(), M, N, method="multishap", budget=500, seed=0, budget_unit="cost")
    by_count = estimate_interactions(Priced(), M, N, method="multishap", budget=500, seed=0)
    assert by_count.evaluations <= 500 < by_cost.evaluations
    with pytest.raises(ArgumentError, match="budget_unit"):
        estimate_interactions(base, M, N, budget=500, budget_unit="dollars")
