"""The `product` estimator against exact truth: on tabulated dual-encoder games, on unanimity games
through the coalition contract, and on a small game built from the shipped real model."""


import numpy as np
import pytest

from multishap.service.math.costs import CostModel, expand_product
from multishap.service.math.estimators.product import PRODUCT, least_budget, min_budget, product_estimate
from multishap.service.math.games import TabulatedGame, make_game
from multishap.service.math.validation import ArgumentError

DUAL = CostModel("encoder passes", image_encode=1.0, text_encode=1.0, coalition=0.0)
M, N = 8, 5


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_tables(m: int, n: int, seed: int, dim: int = 6) -> TabulatedGame:
    """A dual encoder whose embeddings are a smooth random function of the mask, normalised (cosine scores)."""
    rng = np.random.default_rng(seed)

    def table(k: int) -> np.ndarray:
        bits = ((np.arange(1 << k)[:, None] >> np.arange(k)) & 1).astype(np.float64)
        emb = np.tanh(bits @ rng.normal(size=(k, dim)) + rng.normal(size=dim))
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)

    return TabulatedGame("random", m, n, table(m), table(n))


class Recorder:
    """A dual encoder that records every distinct image and text mask passed to ``product``."""

    costs = DUAL

    def __init__(self, game: TabulatedGame) -> None:
        self.game = game
        self.images: set[bytes] = set()
        self.texts: set[bytes] = set()
        self.largest = 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.game(masks)

    def product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        self.images.update(row.tobytes() for row in np.packbits(image_masks, axis=1))
        self.texts.update(row.tobytes() for row in np.packbits(text_masks, axis=1))
        self.largest = max(self.largest, len(image_masks) * len(text_masks))
        return self.game.product(image_masks, text_masks)


@pytest.fixture(scope="module")
def tabulated():
    game = random_tables(M, N, seed=3)
    return game, {index: game.interactions(index) for index in ("SII", "BII")}


def mean_error(game, truth, budget, index, seeds=range(6), costs=DUAL):
    return np.mean([rel(product_estimate(game, game.m, game.n, budget, s, index, costs=costs).phi, truth)
                    for s in seeds])


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_error_falls_with_budget(index, tabulated):
    game, truth = tabulated
    texts = 1 << N
    low = mean_error(game, truth[index], texts + 110, index)
    high = mean_error(game, truth[index], texts + 220, index)
    assert low > 1e-3
    assert high < 0.75 * low


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_exact_when_budget_covers_every_image_mask(index, tabulated):
    game, truth = tabulated
    est = product_estimate(game, M, N, (1 << M) + (1 << N), 0, index, costs=DUAL)
    np.testing.assert_allclose(est.phi, truth[index], atol=1e-12)
    assert np.all(est.stderr == 0)
    table = game.table()
    assert est.v_empty == pytest.approx(table[0, 0])
    assert est.v_full == pytest.approx(table[-1, -1])
    assert est.v_image_only == pytest.approx(table[-1, 0])
    assert est.v_text_only == pytest.approx(table[0, -1])


@pytest.mark.parametrize("budget", [int(least_budget(M, N, DUAL)), 180, 250, 300])
def test_budget_is_never_exceeded(budget, tabulated):
    game, _ = tabulated
    rec = Recorder(game)
    est = product_estimate(rec, M, N, budget, 1, "SII", max_batch=100)
    assert len(rec.images) + len(rec.texts) <= budget
    assert est.evaluations == len(rec.images) * len(rec.texts)
    assert rec.largest <= 100
    # Most of the budget is used.
    assert len(rec.images) + len(rec.texts) >= 0.8 * budget


def test_progress_reports_cost_spent(tabulated):
    game, _ = tabulated
    seen = []
    product_estimate(game, M, N, 250, 0, "SII", max_batch=64, progress=lambda done, total: seen.append((done, total)),
                     costs=DUAL)
    done = [d for d, _ in seen]
    assert len(seen) > 3 and done == sorted(done) and all(t == 250 for _, t in seen) and done[-1] <= 250


def test_coalition_priced_budget_counts_coalitions():
    """Without a cost model the budget counts coalitions: the product design's A * B pairs."""
    game = make_game("mlp", 6, 4, seed=0)
    seen: set[bytes] = set()

    def value_fn(masks: np.ndarray) -> np.ndarray:
        seen.update(r.tobytes() for r in np.packbits(masks, axis=1))
        return game(masks)

    est = product_estimate(value_fn, 6, 4, 1500, 0, "SII", max_batch=64)
    assert len(seen) == est.evaluations <= 1500
    assert len(seen) > 1000


def test_too_small_a_budget_is_refused(tabulated):
    game, _ = tabulated
    with pytest.raises(ArgumentError, match="too small"):
        product_estimate(game, M, N, least_budget(M, N, DUAL) - 1, 0, "SII", costs=DUAL)


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_same_design_whatever_max_batch(index, tabulated):
    """The masks scored, in order, do not depend on max_batch (BLAS may round a matmul block differently)."""
    game, _ = tabulated
    recorders = [Recorder(game) for _ in range(3)]
    runs = [product_estimate(rec, M, N, 200, 4, index, max_batch=b) for rec, b in zip(recorders, (1, 37, 4096))]
    for rec, run in zip(recorders[1:], runs[1:]):
        assert rec.images == recorders[0].images and rec.texts == recorders[0].texts
        np.testing.assert_allclose(run.phi, runs[0].phi, rtol=0, atol=1e-12)
    other = product_estimate(game, M, N, 200, 5, index, costs=DUAL)
    assert not np.allclose(other.phi, runs[0].phi)


class CoalitionsOnly:
    """A game with a dual encoder's cost model but no product: the estimator must expand products."""

    costs = DUAL

    def __init__(self, game) -> None:
        self.game = game
        self.calls: list[int] = []

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        self.calls.append(len(masks))
        return self.game(masks)


class WithProduct(CoalitionsOnly):
    def product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        return expand_product(self.game, image_masks, text_masks)


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_expansion_path_equals_product_path(index):
    game = make_game("unanimity-low", 6, 4, seed=1)
    plain, with_product = CoalitionsOnly(game), WithProduct(game)
    a = product_estimate(plain, 6, 4, 120, 2, index, max_batch=50)
    b = product_estimate(with_product, 6, 4, 120, 2, index, max_batch=50)
    assert np.array_equal(a.phi, b.phi)
    assert np.array_equal(a.stderr, b.stderr)
    assert max(plain.calls) <= 50


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_bit_identical_whatever_max_batch(index):
    """With a row-deterministic game, the estimate is the same to the bit for any max_batch."""
    game = make_game("mlp", 6, 4, seed=3)
    runs = [product_estimate(WithProduct(game), 6, 4, 150, 7, index, max_batch=b) for b in (1, 16, 33, 4096)]
    for run in runs[1:]:
        assert np.array_equal(run.phi, runs[0].phi)
        assert np.array_equal(run.stderr, runs[0].stderr)


@pytest.mark.parametrize("index", ["SII", "BII"])
def test_unanimity_game_through_coalitions(index):
    """Coalition-priced (no cost model): the text side is sampled too; error falls, exact when all fits."""
    m, n = 6, 4
    game = make_game("unanimity-low", m, n, seed=2)
    truth = game.interactions(index)
    low = mean_error(game, truth, 1_000, index, costs=None)
    high = mean_error(game, truth, 3_000, index, costs=None)
    assert high < 0.75 * low
    exact = product_estimate(game, m, n, 1 << (m + n), 0, index)
    np.testing.assert_allclose(exact.phi, truth, atol=1e-12)


def test_standard_errors_are_calibrated(tabulated):
    game, truth = tabulated
    z = []
    for s in range(30):
        est = product_estimate(game, M, N, (1 << N) + 150, s, "SII", costs=DUAL)
        sampled = est.stderr > 0
        z.append(((est.phi - truth["SII"]) / np.where(sampled, est.stderr, 1.0))[sampled])
    rms = float(np.sqrt(np.mean(np.concatenate(z) ** 2)))
    assert 0.6 < rms < 1.6


def test_registry_contract():
    assert PRODUCT.name == "product"
    assert PRODUCT.min_budget(12, 10) == min_budget(12, 10) == least_budget(12, 10, CostModel())
    assert set(PRODUCT.indices) == {"SII", "BII"}


@pytest.fixture(scope="module")
def real_game():
    """The shipped zero-shot dual encoder on a 2x3 grid of chelsea and a short caption, tabulated."""
    pytest.importorskip("torch")
    from hf_models import zeroshot_table_game

    return zeroshot_table_game(2, 3, "a cat on a couch")


@pytest.mark.slow
@pytest.mark.parametrize("index", ["SII", "BII"])
def test_real_model_game(index, real_game):
    game = real_game
    truth = game.interactions(index)
    exact = product_estimate(game, game.m, game.n, (1 << game.m) + (1 << game.n), 0, index, costs=DUAL)
    np.testing.assert_allclose(exact.phi, truth, atol=1e-12)
    errors = [rel(product_estimate(game, game.m, game.n, int(least_budget(game.m, game.n, DUAL)), s, index, costs=DUAL).phi, truth)
              for s in range(4)]
    assert 0 < np.mean(errors) < 0.3
