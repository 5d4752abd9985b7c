"""The estimator registry: one place names the methods, and everything that lists them reads it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from multishap.service.math.estimators import ESTIMATORS, METHODS, estimate_interactions
from multishap.service.math.estimators.registry import choose_method, markdown_table, method_help
from multishap.service.math.games import make_game

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_table_is_the_registrys():
    assert markdown_table() in README.read_text()


def test_methods_and_help_come_from_the_registry():
    assert METHODS == ("auto", *ESTIMATORS)
    assert all(f"{name}:" in method_help() for name in METHODS)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_each_estimator_runs_at_its_minimum_budget_and_not_below(name):
    m, n = 3, 2
    game = make_game("mixed", m, n, seed=0)
    needed = ESTIMATORS[name].min_budget(m, n)
    est = estimate_interactions(game, m, n, method=name, budget=needed, seed=0)
    assert est.method == name and est.evaluations <= needed and est.phi.shape == (m, n)
    with pytest.raises(ValueError, match=f"too small for one step of method '{name}'"):
        estimate_interactions(game, m, n, method=name, budget=needed - 1, seed=0)


def test_auto_names_the_estimator_it_ran():
    game = make_game("mixed", 4, 3, seed=0)
    assert choose_method(4, 3, 1 << 7) == "exact" and choose_method(4, 3, (1 << 7) - 1) == "sparse"
    est = estimate_interactions(game, 4, 3, method="auto", budget=1 << 7)
    exact = estimate_interactions(game, 4, 3, method="exact", budget=1 << 7)
    assert est.method == "exact" and np.array_equal(est.phi, exact.phi)
