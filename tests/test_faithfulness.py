"""F_syn, unimodal metrics and the macro game on games with answers known by hand."""

from itertools import combinations
from math import factorial

import numpy as np
import pytest

from multishap.service.math.games import MobiusGame, mixed_game
from multishap.service.math.attributions import multishap_scores, oracle_scores, random_scores
from multishap.service.math.estimators import exact_interactions
from multishap.service.math.faithfulness import (
    macro_game_sii,
    synergistic_faithfulness,
    top_sets,
    unimodal_faithfulness,
)

M = N = 10
AND = MobiusGame(M, N, (((0, M), 1.0),))
# max(patch 0, token 0) = x_p + x_t - x_p x_t
REDUNDANT = MobiusGame(M, N, (((0,), 1.0), ((M,), 1.0), ((0, M), -1.0)))


def perfect():
    a, b = np.zeros(M), np.zeros(N)
    a[0] = b[0] = 1.0
    return a, b


def test_and_game_perfect_explainer_scores_095():
    fs = synergistic_faithfulness(AND, M, N, *perfect())
    assert fs.f_syn == pytest.approx(0.95)
    assert fs.f_ins == pytest.approx(0.95) and fs.f_del == pytest.approx(0.95)
    np.testing.assert_allclose(fs.curve_ins, [0] + [1] * 10)
    np.testing.assert_allclose(fs.alphas, np.arange(11) / 10)
    assert fs.f_syn_raw == pytest.approx(0.95)


def test_and_game_random_explainers_score_lower_on_average():
    scores = [synergistic_faithfulness(AND, M, N, *random_scores(M, N, s)).f_syn for s in range(30)]
    assert np.mean(scores) < 0.7
    assert max(scores) <= 0.95


def test_redundancy_collapses_unimodal_metrics_but_not_raw_fsyn():
    good = synergistic_faithfulness(REDUNDANT, M, N, *perfect())
    assert good.f_syn == 0.0
    assert good.f_syn_raw == pytest.approx(-0.95)
    assert good.f_syn_unclipped == pytest.approx(-0.95)
    uf_good = unimodal_faithfulness(REDUNDANT, M, N, *perfect())
    for s in range(5):
        rand = random_scores(M, N, s)
        assert synergistic_faithfulness(REDUNDANT, M, N, *rand).f_syn == 0.0
        assert synergistic_faithfulness(REDUNDANT, M, N, *rand).f_syn_raw > -0.95
        uf_rand = unimodal_faithfulness(REDUNDANT, M, N, *rand)
        for mod in ("visual", "text"):
            g, r = getattr(uf_good, mod), getattr(uf_rand, mod)
            assert (g.insertion, g.deletion, g.srg) == (r.insertion, r.deletion, r.srg)


def test_unimodal_metrics_by_hand_on_additive_game():
    """v = patch 0 + token 0: visual baseline v(T) = 1, Z_V = 1; the perfect explainer's
    deletion curve is 0 from alpha = 0.1 on and its insertion curve 1."""
    game = MobiusGame(M, N, (((0,), 1.0), ((M,), 1.0)))
    uf = unimodal_faithfulness(game, M, N, *perfect())
    np.testing.assert_allclose(uf.visual.curve_del, [1] + [0] * 10)
    np.testing.assert_allclose(uf.visual.curve_ins, [0] + [1] * 10)
    assert uf.visual.deletion == pytest.approx(0.05)
    assert uf.visual.insertion == pytest.approx(0.95)
    assert uf.visual.srg == pytest.approx(0.9)
    assert uf.text.srg == pytest.approx(0.9)


def test_mixed_game_ranks_synergy_finder_above_redundancy_finder_above_random():
    game = mixed_game(M, N, seed=0, synergy=(3, 4), redundancy=(5, 6))
    syn_a, syn_b = np.zeros(M), np.zeros(N)
    syn_a[3] = syn_b[4] = 1.0
    red_a, red_b = np.zeros(M), np.zeros(N)
    red_a[5] = red_b[6] = 1.0
    f_syn = synergistic_faithfulness(game, M, N, syn_a, syn_b).f_syn
    f_red = synergistic_faithfulness(game, M, N, red_a, red_b).f_syn
    f_rand = np.mean([synergistic_faithfulness(game, M, N, *random_scores(M, N, s)).f_syn for s in range(20)])
    assert f_syn > f_rand > f_red


def test_oracle_and_multishap_explainers_find_the_synergy():
    game = mixed_game(M, N, seed=1, synergy=(2, 7), redundancy=(8, 1))
    oracle = synergistic_faithfulness(game, M, N, *oracle_scores(game)).f_syn
    derived = synergistic_faithfulness(game, M, N, *multishap_scores(game.interactions("SII"))).f_syn
    rand = np.mean([synergistic_faithfulness(game, M, N, *random_scores(M, N, s)).f_syn for s in range(20)])
    assert oracle > rand and derived > rand


def test_set_sizes_round_half_to_even_and_ties_go_to_lower_index():
    sets = top_sets(np.zeros(5), 10)
    assert [len(s) for s in sets] == [0, 0, 1, 2, 2, 2, 3, 4, 4, 4, 5]
    assert list(sets[5]) == [0, 1]
    assert list(top_sets(np.array([0.1, 0.9, 0.5, 0.9]), 2)[1]) == [1, 3]


def test_evaluations_at_most_6k_plus_2():
    for steps in (1, 3, 10):
        fs = synergistic_faithfulness(AND, M, N, *random_scores(M, N, 0), steps=steps)
        assert fs.evaluations <= 6 * steps + 2
        assert len(fs.curve_del) == len(fs.alphas) == steps + 1


def brute_force_macro_sii(game, players) -> float:
    """SII of macro players 0 and 1 from the definition, over all subsets of the rest."""
    k = len(players)

    def v(chosen) -> float:
        mask = np.zeros((1, game.m + game.n), dtype=bool)
        for p in chosen:
            mask[0, players[p]] = True
        return float(game(mask)[0])

    total = 0.0
    rest = list(range(2, k))
    for size in range(len(rest) + 1):
        w = factorial(size) * factorial(k - size - 2) / factorial(k - 1)
        for s in combinations(rest, size):
            total += w * (v(s + (0, 1)) - v(s + (0,)) - v(s + (1,)) + v(s))
    return total


@pytest.mark.parametrize("m, n", [(10, 10), (4, 3)])
def test_macro_game_matches_brute_force_and_partitions_players(m, n):
    game = mixed_game(m, n, seed=2)
    a, b = random_scores(m, n, 3)
    ms = macro_game_sii(game, m, n, a, b, steps=4, seed=5)
    assert ms.per_step.shape == (5,) and ms.per_step[0] == 0.0
    for k, players in enumerate(ms.players):
        assert len(players) == 8
        joined = np.sort(np.concatenate(players))
        np.testing.assert_array_equal(joined, np.arange(m + n))
        assert ms.per_step[k] == pytest.approx(brute_force_macro_sii(game, players), abs=1e-12)
    assert ms.auc == pytest.approx(np.sum((ms.per_step[1:] + ms.per_step[:-1]) / 2) / 4)


def test_macro_game_with_full_sets_is_modality_interaction():
    game = mixed_game(6, 6, seed=0)
    ms = macro_game_sii(game, 6, 6, np.ones(6), np.ones(6), steps=2)
    masks = np.zeros((4, 12), dtype=bool)
    masks[1] = True
    masks[2, :6] = True
    masks[3, 6:] = True
    v = game(masks)
    assert ms.per_step[-1] == pytest.approx(v[1] - v[2] - v[3] + v[0])


def test_macro_players_depend_only_on_seed():
    game = mixed_game(M, N, seed=0)
    a, b = random_scores(M, N, 1)
    one = macro_game_sii(game, M, N, a, b, seed=4)
    two = macro_game_sii(game, M, N, a, b, seed=4)
    other = macro_game_sii(game, M, N, a, b, seed=5)
    for p, q in zip(one.players, two.players):
        for x, y in zip(p, q):
            np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for p, q in zip(one.players, other.players) for x, y in zip(p, q))
    np.testing.assert_array_equal(one.per_step, two.per_step)


def test_synergy_of_and_game_in_macro_game_is_one():
    ms = macro_game_sii(AND, M, N, *perfect(), steps=10)
    np.testing.assert_allclose(ms.per_step, [0] + [1] * 10)
    assert ms.auc == pytest.approx(0.95)
    assert exact_interactions(MobiusGame(2, 2, (((0, 2), 1.0),)), 2, 2)[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: synergistic_faithfulness(AND, M, N, np.zeros(M - 1), np.zeros(N)), "patch_scores must be a 1-D array of length 10"),
        (lambda: synergistic_faithfulness(AND, M, N, np.zeros(M), np.zeros((N, 1))), "token_scores must be a 1-D array"),
        (lambda: synergistic_faithfulness(AND, M, N, np.full(M, np.nan), np.zeros(N)), "NaN or infinity"),
        (lambda: synergistic_faithfulness(AND, M, N, ["x"] * M, np.zeros(N)), "real numbers"),
        (lambda: synergistic_faithfulness(AND, M, N, np.zeros(M), np.zeros(N), steps=0), "steps must be at least 1"),
        (lambda: synergistic_faithfulness(AND, M, N, np.zeros(M), np.zeros(N), eps=0), "eps must be a positive number"),
        (lambda: unimodal_faithfulness(AND, M, N, np.zeros(M), np.zeros(N), eps=-1), "eps must be a positive number"),
        (lambda: unimodal_faithfulness(AND, M, N, np.zeros(M), np.zeros(N), steps=0), "steps must be"),
        (lambda: macro_game_sii(AND, M, N, np.zeros(M), np.zeros(N), chunks=0), "chunks must be at least 1"),
        (lambda: macro_game_sii(AND, M, N, np.zeros(M), [np.inf] * N), "NaN or infinity"),
        (lambda: macro_game_sii(AND, 0, N, np.zeros(0), np.zeros(N)), "m must be at least 1"),
    ],
)
def test_bad_inputs(call, message):
    with pytest.raises(ValueError, match=message):
        call()
