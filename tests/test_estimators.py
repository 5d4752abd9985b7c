"""Sampling estimators against exact truth: convergence, unbiasedness, determinism, budget."""

import numpy as np
import pytest

from multishap.service.math.games import make_game
from multishap.service.math.estimators import choose_method, estimate_interactions
from multishap.service.math.estimators.exact import exact_estimate

M, N = 6, 4
SAMPLERS = ["multishap", "kernel"]


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def mlp():
    game = make_game("mlp", M, N, seed=5)
    return game, exact_estimate(game, M, N)


@pytest.fixture(scope="module")
def large_unanimity():
    game = make_game("unanimity-low", 25, 8, seed=2)
    return game, game.interactions("SII")


def mean_error(game, truth, method, budget, seeds=range(6), m=M, n=N, index="SII"):
    return np.mean([rel(estimate_interactions(game, m, n, method=method, budget=budget, seed=s, index=index).phi, truth) for s in seeds])


@pytest.mark.parametrize("method", SAMPLERS)
def test_error_falls_with_budget(method, large_unanimity):
    game, truth = large_unanimity
    low = mean_error(game, truth, method, 3_000, m=25, n=8, seeds=range(3))
    high = mean_error(game, truth, method, 12_000, m=25, n=8, seeds=range(3))
    assert high < 0.7 * low


@pytest.mark.parametrize("method", SAMPLERS)
def test_mean_over_seeds_approaches_exact_sii(method, mlp):
    game, exact = mlp
    runs = [estimate_interactions(game, M, N, method=method, budget=600, seed=s).phi for s in range(40)]
    single = np.mean([rel(r, exact.phi) for r in runs])
    averaged = rel(np.mean(runs, axis=0), exact.phi)
    assert averaged < 0.4 * single
    assert averaged < 0.08


@pytest.mark.parametrize("method", SAMPLERS)
def test_bii_variant_converges_to_bii_not_sii(method):
    game = make_game("unanimity-high", 10, 6, seed=4)
    bii, sii = game.interactions("BII"), game.interactions("SII")
    assert rel(bii, sii) > 0.3
    phi = np.mean([estimate_interactions(game, 10, 6, method=method, budget=20_000, seed=s, index="BII").phi for s in range(4)], axis=0)
    assert rel(phi, bii) < 0.1
    assert rel(phi, sii) > 0.25


@pytest.mark.parametrize("method", SAMPLERS)
def test_sii_variant_is_not_bii(method):
    game = make_game("unanimity-high", 10, 6, seed=4)
    sii = game.interactions("SII")
    phi = estimate_interactions(game, 10, 6, method=method, budget=30_000, seed=0).phi
    assert rel(phi, sii) < 0.12


@pytest.mark.parametrize("method", SAMPLERS + ["auto", "exact"])
def test_budget_is_never_exceeded_and_counted(method):
    calls = []

    def value_fn(masks):
        calls.append(masks.copy())
        return make_game("mlp", M, N, seed=0)(masks)

    budget = 1024 if method == "exact" else 777
    est = estimate_interactions(value_fn, M, N, method=method, budget=budget, seed=1, max_batch=64)
    seen = np.concatenate(calls)
    distinct = len({row.tobytes() for row in seen})
    assert distinct == len(seen) == est.evaluations <= budget
    assert max(len(c) for c in calls) <= 64


@pytest.mark.parametrize("method", SAMPLERS + ["exact"])
@pytest.mark.parametrize("index", ["SII", "BII"])
def test_bit_identical_across_batch_sizes(method, index):
    game = make_game("bilinear", M, N, seed=3)
    results = [estimate_interactions(game, M, N, method=method, budget=1024, seed=7, index=index, max_batch=b) for b in (1, 13, 4096)]
    for other in results[1:]:
        assert np.array_equal(results[0].phi, other.phi)
        assert np.array_equal(results[0].stderr, other.stderr)
        assert results[0].evaluations == other.evaluations


@pytest.mark.parametrize("method", SAMPLERS)
def test_other_seed_gives_other_estimate(method, mlp):
    game, _ = mlp
    a = estimate_interactions(game, M, N, method=method, budget=400, seed=1).phi
    b = estimate_interactions(game, M, N, method=method, budget=400, seed=2).phi
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("method", SAMPLERS)
def test_standard_errors_are_calibrated(method, large_unanimity):
    game, truth = large_unanimity
    z = []
    for seed in range(4):
        est = estimate_interactions(game, 25, 8, method=method, budget=6_000, seed=seed)
        ok = np.isfinite(est.stderr) & (est.stderr > 0)
        z.append(((est.phi - truth)[ok] / est.stderr[ok]))
    rms = float(np.sqrt(np.mean(np.concatenate(z) ** 2)))
    assert 0.5 < rms < 2.0


def test_kernel_reports_shapley_values_and_anchors(mlp):
    game, exact = mlp
    est = estimate_interactions(game, M, N, method="kernel", budget=800, seed=0)
    assert est.shapley.sum() == pytest.approx(exact.v_full - exact.v_empty, abs=1e-9)
    assert rel(est.shapley, exact.shapley) < 0.1
    assert est.v_full == exact.v_full and est.v_empty == exact.v_empty
    assert est.modality_interaction == pytest.approx(exact.modality_interaction)


def test_kernel_on_closed_form_game_at_7x7_by_10():
    game = make_game("unanimity-low", 49, 10, seed=0)
    est = estimate_interactions(game, 49, 10, method="kernel", budget=20_000, seed=0)
    assert est.method == "kernel" and est.evaluations <= 20_000
    assert rel(est.phi, game.interactions("SII")) < 0.2


def test_more_patches_than_tokens_or_fewer_both_work():
    for m, n in ((3, 8), (8, 3)):
        game = make_game("unanimity-low", m, n, seed=1)
        est = estimate_interactions(game, m, n, method="kernel", budget=1500, seed=0)
        assert est.phi.shape == (m, n)
        assert rel(est.phi, game.interactions("SII")) < 0.05


def test_auto_uses_exact_when_budget_covers_small_game():
    assert choose_method(6, 4, 1024) == "exact"
    assert choose_method(6, 4, 1023) == "sparse"
    assert choose_method(49, 10, 10**9) == "sparse"
    assert choose_method(49, 10, 10**9, nested=True) == "controlled"
    assert choose_method(6, 4, 10**9, factorised=True) == "product"


def test_progress_is_reported_up_to_evaluations(mlp):
    game, _ = mlp
    seen = []
    est = estimate_interactions(game, M, N, method="kernel", budget=600, seed=0, max_batch=50, progress=lambda d, b: seen.append((d, b)))
    assert seen[-1] == (est.evaluations, 600)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
