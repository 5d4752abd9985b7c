"""Exact enumeration against an independent brute-force formula and closed-form truth."""

from itertools import combinations
from math import factorial

import numpy as np
import pytest

from multishap.service.math.games import FAMILIES, MobiusGame, make_game
from multishap.service.math.estimators import estimate_interactions, exact_interactions
from multishap.service.math.estimators.exact import exact_estimate


def brute_force(game, m: int, n: int, index: str) -> np.ndarray:
    """SII / BII straight from the definition, one coalition at a time."""
    n_players = m + n

    def v(players) -> float:
        mask = np.zeros((1, n_players), dtype=bool)
        mask[0, list(players)] = True
        return float(game(mask)[0])

    phi = np.zeros((m, n))
    for i in range(m):
        for j in range(m, n_players):
            rest = [k for k in range(n_players) if k not in (i, j)]
            for size in range(len(rest) + 1):
                if index == "SII":
                    weight = factorial(size) * factorial(n_players - size - 2) / factorial(n_players - 1)
                else:
                    weight = 0.5 ** (n_players - 2)
                for s in combinations(rest, size):
                    delta = v(s + (i, j)) - v(s + (i,)) - v(s + (j,)) + v(s)
                    phi[i, j - m] += weight * delta
    return phi


@pytest.mark.parametrize("family", ["unanimity-high", "mlp", "bilinear"])
@pytest.mark.parametrize("index", ["SII", "BII"])
def test_exact_matches_brute_force(family, index):
    game = make_game(family, 4, 3, seed=1)
    np.testing.assert_allclose(exact_interactions(game, 4, 3, index=index), brute_force(game, 4, 3, index), atol=1e-12)


def test_unanimity_pair_has_interaction_one_not_one_half():
    """A unanimity game on {patch 0, token 0}: SII = BII = 1 (no extra 1/2 factor)."""
    game = MobiusGame(3, 2, (((0, 3), 1.0),))
    phi = exact_interactions(game, 3, 2)
    expected = np.zeros((3, 2))
    expected[0, 0] = 1.0
    np.testing.assert_allclose(phi, expected, atol=1e-14)


def test_sii_and_bii_differ_on_higher_order_terms():
    """A unanimity game of order 4 splits 1/3 (SII) vs 1/4 (BII) onto each pair inside it."""
    game = MobiusGame(3, 3, (((0, 1, 3, 4), 1.0),))
    np.testing.assert_allclose(exact_interactions(game, 3, 3, "SII")[0, 0], 1 / 3, atol=1e-14)
    np.testing.assert_allclose(exact_interactions(game, 3, 3, "BII")[0, 0], 1 / 4, atol=1e-14)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f not in ("mlp", "bilinear")])
def test_closed_form_matches_enumeration(family):
    game = make_game(family, 10, 6, seed=3)
    est = exact_estimate(game, 10, 6)
    np.testing.assert_allclose(est.phi, game.interactions("SII"), atol=1e-11)
    np.testing.assert_allclose(exact_interactions(game, 10, 6, "BII"), game.interactions("BII"), atol=1e-11)
    np.testing.assert_allclose(est.shapley, game.shapley(), atol=1e-11)
    assert np.abs(est.phi).sum() > 0.1


def test_exact_reports_anchors_and_efficient_shapley():
    game = make_game("mlp", 5, 4, seed=2)
    est = estimate_interactions(game, 5, 4, method="exact", budget=512)
    masks = np.zeros((4, 9), dtype=bool)
    masks[1] = True
    masks[2, :5] = True
    masks[3, 5:] = True
    v = game(masks)
    assert (est.v_empty, est.v_full, est.v_image_only, est.v_text_only) == tuple(v)
    assert est.modality_interaction == pytest.approx(v[1] - v[2] - v[3] + v[0])
    assert est.shapley.sum() == pytest.approx(v[1] - v[0], abs=1e-12)
    assert est.evaluations == 512 and np.all(est.stderr == 0)


def test_twenty_players_enumerate_quickly():
    game = make_game("unanimity-low", 14, 6, seed=0)
    np.testing.assert_allclose(exact_interactions(game, 14, 6), game.interactions("SII"), atol=1e-10)


def test_tabulated_dual_encoder_game_matches_enumeration():
    """The real-model benchmark games' closed form (from their embedding tables) equals enumeration."""
    from multishap.service.math.games import TabulatedGame

    rng = np.random.default_rng(3)
    game = TabulatedGame("t", 3, 4, rng.normal(size=(8, 5)), rng.normal(size=(16, 5)))
    masks = rng.random((20, 7)) < 0.5
    assert np.allclose(game.product(masks[:5, :3], masks[:4, 3:]).ravel(),
                       game(np.concatenate([np.repeat(masks[:5, :3], 4, 0), np.tile(masks[:4, 3:], (5, 1))], 1)))
    for index in ("SII", "BII"):
        assert np.allclose(game.interactions(index), exact_estimate(game, 3, 4, index).phi, atol=1e-12)
