"""The `product` estimator: stratified product designs for dual encoders, priced in encoder passes.

A dual encoder pays per distinct masked image and per distinct masked text, not per coalition:
scoring a product design (a set of image masks x a set of text masks) costs one encode per
new mask on each side. This estimator therefore spends its budget on masks, not coalitions.

With P the m patches, T the n tokens, N = m + n and Delta_ij(A, B) = v(A+i, B+j) - v(A+i, B)
- v(A, B+j) + v(A, B), the index is

    Phi_ij = sum_{a, b} W(a, b) sum_{A ⊆ P∖i, |A|=a} sum_{B ⊆ T∖j, |B|=b} Delta_ij(A, B),

W(a, b) = w(a + b) with w(s) = s! (N - s - 2)! / (N - 1)! (SII) or 2^-(N-2) (BII). Per side the
subsets are stratified by size: image stratum a of patch i is {A ⊆ P∖i : |A| = a}, with
C(m-1, a) members, likewise text stratum b of token j. With Abar_{a,i} the mean over the scored
pairs (A, A+i) of stratum (a, i) of e_{A+i} - e_A, Bbar_{b,j} likewise on the text side and V
the scored product matrix, the estimate is

    Phi_ij = sum_{a, b} W(a, b) C(m-1, a) C(n-1, b) Abar_{a,i}' V Bbar_{b,j},

unbiased stratum by stratum (given how many pairs a stratum got: every scored pair is a uniform
member of its stratum), and exact in every stratum whose two layers (sizes a and a+1) are
fully scored. Every scored mask serves every stratum it can: as the lower mask A for each
absent player whose partner A+i is scored, and as the upper mask for each present one.

Design. Text: when n <= 12 and 2^n text encodes take at most half of the budget, every text mask
is scored once, so each image pair (A, A+i) gives g_ij(A) = sum_B W Delta_ij(A, B) exactly; else
text masks are sampled once, before the images, in rounds of stars (below) over every text
stratum, taking at most about half of the budget (whole rounds). Image: masks are sampled in
*stars*: in stratum a an up-star is a uniform a-subset A with every A+i (i ∉ A), a down-star a
uniform (a+1)-subset X with every X-i (i in X); the cheaper direction is used (it covers max(m-a, a+1) players for
that many plus one encodes). A *round* of stratum a cuts a random permutation of the patches
into consecutive windows (the last one wrapping), one star per window, so it gives every patch
at least one sample of that stratum. The first round of every stratum is a pilot; its
within-stratum variances drive a Neyman allocation of the rest: a stratum whose Neyman share
would pay for enumerating its two layers is enumerated (exact), the others receive further
rounds greedily by variance reduction per cost. When the budget covers every image mask with
every text mask, all are scored and the result is exact.

Standard errors are the stratified-sampling ones: per stratum the sample variance of the
per-pair contributions (pooled over the stratum's players), divided by the number of its pairs
that touch a star's centre (independent draws; pairs between two leaves or a leaf and an
enumerated layer are correlated with those, so they sharpen the mean but add no count), with
the finite-population correction (0 for an enumerated stratum); image-side and text-side
variances add.

Cost. The budget is in units of the cost model (``costs``, else the value function's own,
:func:`~multishap.service.math.costs.cost_model`): a product call costs image_encode per new
image mask, text_encode per new text mask and coalition per new coalition (every image row is
scored against the whole text design, once; nothing is paid twice). A value function without
``product`` is scored through :func:`~multishap.service.math.costs.expand_product`, i.e. as
A * B plain coalitions: with a coalition-priced cost model the estimator still works (it
samples the text side too), just not cheaply. ``min_budget(m, n)`` counts coalitions (the
pairs of one round of every stratum on both sides); :func:`least_budget` prices that round
in any cost model (at a dual encoder: one encode per mask).

The design depends on the seed and on the values only (never on ``max_batch``): product
calls are cut so that a call scores at most ``max_batch`` coalitions (at least one image mask
per call; the text design in pieces of at most ``max_batch``).
"""

from __future__ import annotations

from functools import partial
from itertools import combinations
from math import comb
from typing import Callable, Optional

import numpy as np

from multishap.service import defaults
from multishap.service.math.costs import COALITIONS, CostModel, cost_model, expand_product, product_function
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import ProgressCallback, ValueFunction, check_values
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.estimators.weights import bii_weights, sii_weights
from multishap.service.math.interrupt import checkpoint
from multishap.service.math.validation import ArgumentError

# Largest text side enumerated outright, and the most of the budget that enumeration may take.
MAX_ENUMERATED_TOKENS = 12
TEXT_ENUMERATION_SHARE = 0.5
# Share of the budget a sampled text design takes.
SAMPLED_TEXT_SHARE = 0.5
# Rounds of a stratum in a row that add no new mask before it is deemed saturated.
IDLE_ROUNDS = 3
# Most patches for which a budget covering every image mask scores them all (the exact case).
MAX_EXACT_PATCHES = 20
# Largest layer the estimator will list to enumerate it.
MAX_ENUMERATED_LAYER = 1 << 16

Product = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _window(k: int, a: int) -> int:
    """Players one star of stratum a covers: up-stars cover the k - a absent, down-stars the a + 1 present."""
    return max(k - a, a + 1)


def _round_cost(k: int, a: int) -> int:
    """Masks one round of stratum a needs at most: ceil(k / L) stars of L + 1 masks."""
    width = _window(k, a)
    return -(-k // width) * (width + 1)


def _design_bound(k: int, rounds: int) -> int:
    """Masks ``rounds`` rounds of every stratum of a k-player side need at most."""
    return min(1 << k, rounds * sum(_round_cost(k, a) for a in range(k)))


def least_budget(m: int, n: int, costs: CostModel) -> float:
    """What one round of every stratum on each side costs at ``costs``' prices (the least budget)."""
    image_min, text_min = _design_bound(m, 1), _design_bound(n, 1)
    return text_min * costs.text_encode + image_min * (costs.image_encode + text_min * costs.coalition)


def min_budget(m: int, n: int) -> int:
    """In coalitions: the pairs of one round of every stratum on each side (a budget in cost units is
    checked against :func:`least_budget` at the target's prices)."""
    return int(least_budget(m, n, COALITIONS))



def _code(players: np.ndarray | list[int]) -> int:
    return sum(1 << int(p) for p in players)


class _Side:
    """The scored masks of one modality of k players, as integer codes (bit p = player p present)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.codes: list[int] = []
        self.row: dict[int, int] = {}
        self.layer_counts = np.zeros(k + 1, dtype=np.int64)
        self.centres: set[int] = set()

    def fresh(self, codes: list[int]) -> list[int]:
        """The codes not yet scored, first occurrences in order."""
        return [c for c in dict.fromkeys(codes) if c not in self.row]

    def add(self, codes: list[int]) -> None:
        for c in codes:
            self.row[c] = len(self.codes)
            self.codes.append(c)
            self.layer_counts[c.bit_count()] += 1

    def masks(self, codes: list[int]) -> np.ndarray:
        bits = np.arange(self.k)
        return np.array([[(c >> p) & 1 for p in bits] for c in codes], dtype=bool).reshape(len(codes), self.k)

    def layer_full(self, s: int) -> bool:
        return self.layer_counts[s] == comb(self.k, s)

    def exact(self, a: int) -> bool:
        """Whether stratum a (layers a and a+1) is fully scored."""
        return self.layer_full(a) and self.layer_full(a + 1)

    def missing(self, a: int) -> int:
        """Masks still unscored in layers a and a+1."""
        return int(comb(self.k, a) + comb(self.k, a + 1) - self.layer_counts[a] - self.layer_counts[a + 1])

    def layers(self, a: int) -> list[int]:
        """Every mask of sizes a and a+1."""
        return [_code(c) for s in (a, a + 1) for c in combinations(range(self.k), s)]

    def round(self, a: int, rng: np.random.Generator) -> list[list[int]]:
        """One round of stratum a: stars over consecutive windows of a random permutation."""
        k, width = self.k, _window(self.k, a)
        full = (1 << k) - 1
        perm = rng.permutation(k)
        stars = []
        for t in range(-(-k // width)):
            window = perm[(t * width + np.arange(width)) % k]
            free = _code(window)
            centre = full ^ free if width == k - a else free
            stars.append([centre] + [centre ^ (1 << int(p)) for p in window])
        return stars

    def pairs(self) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, int]]:
        """(a, p) -> rows of the scored pairs (A, A+p) with |A| = a, p ∉ A, and how many touch a star's centre."""
        found: dict[tuple[int, int], tuple[list[int], list[int], list[bool]]] = {}
        for r, c in enumerate(self.codes):
            size = c.bit_count()
            for p in range(self.k):
                if not (c >> p) & 1:
                    hi = self.row.get(c | (1 << p))
                    if hi is not None:
                        lo_rows, hi_rows, star = found.setdefault((size, p), ([], [], []))
                        lo_rows.append(r)
                        hi_rows.append(hi)
                        star.append(c in self.centres or c | (1 << p) in self.centres)
        return {key: (np.array(lo), np.array(hi), sum(star)) for key, (lo, hi, star) in found.items()}


def _stratum_moments(pairs: dict, key: tuple[int, int], values: np.ndarray, scale: float
                     ) -> Optional[tuple[np.ndarray, np.ndarray, int, int]]:
    """Mean, sum of squared deviations, count and independent count of scale * (values[hi] - values[lo]).

    Pairs that touch a star's centre are independent draws; the others (two leaves of stars, or a
    leaf and an enumerated layer) are correlated with them, so they sharpen the mean but do not
    count towards the standard error (the variance divides by the independent count).
    """
    if key not in pairs:
        return None
    lo, hi, independent = pairs[key]
    x = scale * (values[hi] - values[lo])
    mean = x.mean(axis=0)
    return mean, ((x - mean) ** 2).sum(axis=0), len(x), max(independent, 1)


def _side_variance(moments: dict, k: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per (player, other-side player): the sum over strata of the means, and of var / count * fpc.

    The per-sample variance of a stratum is pooled over its players (within-player deviations),
    so a player with one sample still gets one. Also returns each stratum's pooled variance.
    """
    total = np.zeros((k, width))
    variance = np.zeros((k, width))
    pooled = np.zeros((k, width))
    for a in range(k):
        population = comb(k - 1, a)
        found = [moments[(a, p)] for p in range(k) if moments[(a, p)] is not None]
        dof = sum(mo[2] - 1 for mo in found)
        pooled[a] = sum(mo[1] for mo in found) / dof if dof > 0 else np.inf
        for p in range(k):
            mo = moments[(a, p)]
            if mo is None:
                variance[p] = np.inf
                continue
            mean, _, count, independent = mo
            total[p] += mean
            fpc = 1.0 - count / population
            if fpc > 0:
                variance[p] += pooled[a] / independent * fpc
    return total, variance, pooled


def _estimate(images: _Side, texts: _Side, values: np.ndarray, w: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phi, its standard errors and the pooled image-side sample variance of each image stratum."""
    m, n = images.k, texts.k
    grid = w[np.arange(m)[:, None] + np.arange(n)[None, :]]            # W(a, b)
    img_pairs, txt_pairs = images.pairs(), texts.pairs()
    # Text operator: T[:, b, j] = C(n-1, b) * mean over pairs of (e_{B+j} - e_B).
    t_op = np.zeros((len(texts.codes), n, n))
    for (b, j), (lo, hi, _) in txt_pairs.items():
        scale = comb(n - 1, b) / len(lo)
        np.add.at(t_op[:, b, j], hi, scale)
        np.add.at(t_op[:, b, j], lo, -scale)
    z = np.einsum("xbj,ab->xaj", (values @ t_op.reshape(len(texts.codes), n * n)).reshape(-1, n, n), grid)
    img_moments = {(a, i): _stratum_moments(img_pairs, (a, i), z[:, a, :], comb(m - 1, a))
                   for a in range(m) for i in range(m)}
    phi, var_img, pooled = _side_variance(img_moments, m, n)
    # Image operator applied to V: S[a, i, :] = C(m-1, a) * mean over pairs of (V[A+i] - V[A]).
    s_v = np.zeros((m, m, len(texts.codes)))
    for (a, i), (lo, hi, _) in img_pairs.items():
        s_v[a, i] = comb(m - 1, a) * (values[hi].mean(axis=0) - values[lo].mean(axis=0))
    y = np.einsum("aiy,ab->ybi", s_v, grid)
    txt_moments = {(b, j): _stratum_moments(txt_pairs, (b, j), y[:, b, :], comb(n - 1, b))
                   for b in range(n) for j in range(n)}
    _, var_txt, _ = _side_variance(txt_moments, n, m)
    stderr = np.sqrt(var_img + var_txt.T)
    with np.errstate(invalid="ignore"):
        pilot = np.where(np.isfinite(pooled), pooled, 0.0).mean(axis=1)
    return phi, stderr, pilot


class _Scorer:
    """Scores new image masks against the fixed text design, within the budget, in max_batch chunks."""

    def __init__(self, product: Product, images: _Side, texts: _Side, text_masks: np.ndarray,
                 costs: CostModel, budget: int, max_batch: int, progress: Optional[ProgressCallback]) -> None:
        self.product = product
        self.images = images
        self.texts = texts
        self.text_masks = text_masks
        self.costs = costs
        self.budget = budget
        self.max_batch = max_batch
        self.progress = progress
        self.spent = 0.0
        self.rows: list[np.ndarray] = []
        self.row_cost = costs.image_encode + len(text_masks) * costs.coalition
        self.text_cost = len(text_masks) * costs.text_encode

    def cost(self, codes: list[int]) -> float:
        """What scoring these image masks would cost now."""
        fresh = len(self.images.fresh(codes))
        if fresh == 0:
            return 0.0
        return fresh * self.row_cost + (self.text_cost if not self.images.codes else 0.0)

    @property
    def remaining(self) -> float:
        return self.budget - self.spent

    def score(self, codes: list[int]) -> bool:
        """Score the new masks among ``codes`` if the budget allows (all or nothing); whether it did."""
        fresh = self.images.fresh(codes)
        if not fresh:
            return True
        cost = self.cost(codes)
        if cost > self.remaining + 1e-9:
            return False
        cap = self.costs.max_coalitions
        if cap is not None and (len(self.images.codes) + len(fresh)) * len(self.text_masks) > cap:
            return False
        masks = self.images.masks(fresh)
        width = min(len(self.text_masks), self.max_batch)
        per_call = max(1, self.max_batch // width)
        for start in range(0, len(fresh), per_call):
            block = masks[start : start + per_call]
            pieces = []
            for t in range(0, len(self.text_masks), width):
                checkpoint()
                text_block = self.text_masks[t : t + width]
                out = np.asarray(self.product(block, text_block))
                if out.shape != (len(block), len(text_block)):
                    raise ArgumentError(f"product returned shape {out.shape} for {len(block)} image masks x "
                                        f"{len(text_block)} text masks; expected ({len(block)}, {len(text_block)})")
                pieces.append(check_values(out.reshape(-1), out.size).reshape(out.shape))
            self.rows.append(np.concatenate(pieces, axis=1))
            self.spent += len(block) * self.row_cost + (self.text_cost if not self.images.codes and start == 0 else 0.0)
            self.images.add(fresh[start : start + per_call])
            if self.progress is not None:
                self.progress(int(self.spent), self.budget)
        return True

    def values(self) -> np.ndarray:
        self.rows = [np.concatenate(self.rows, axis=0)]
        return self.rows[0]


def _text_design(n: int, budget: int, costs: CostModel, rng: np.random.Generator, image_rounds_cost: int) -> _Side:
    """Every text mask when affordable, else rounds of stars over every text stratum (see module doc)."""
    texts = _Side(n)
    full = 1 << n
    fits = lambda j, share: (j * costs.text_encode <= share * budget  # noqa: E731
                             and j * costs.text_encode + image_rounds_cost * (costs.image_encode + j * costs.coalition)
                             <= budget)
    if n <= MAX_ENUMERATED_TOKENS and fits(full, TEXT_ENUMERATION_SHARE):
        texts.add(list(range(full)))
        return texts
    rounds = 1
    while _design_bound(n, rounds) < full and fits(_design_bound(n, rounds + 1), SAMPLED_TEXT_SHARE):
        rounds += 1
    for b in range(n):
        if comb(n, b) + comb(n, b + 1) <= rounds * _round_cost(n, b):
            texts.add(texts.fresh(texts.layers(b)))
            continue
        for _ in range(rounds):
            for star in texts.round(b, rng):
                texts.add(texts.fresh(star))
                texts.centres.add(star[0])
    return texts


def product_estimate(
    value_fn: ValueFunction,
    m: int,
    n: int,
    budget: int,
    seed: int,
    index: str = "SII",
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
    costs: Optional[CostModel] = None,
) -> InteractionEstimate:
    """Estimate the cross-modal SII (or BII) from a stratified product design within ``budget`` cost units."""
    costs = cost_model(value_fn) if costs is None else costs
    product = product_function(value_fn) or partial(expand_product, value_fn)
    w = sii_weights(m + n) if index == "SII" else bii_weights(m + n)
    image_min = _design_bound(m, 1)
    least = least_budget(m, n, costs)
    if budget < least - 1e-9:
        raise ArgumentError(f"budget {budget} is too small for method 'product' with {m} patches and {n} tokens: "
                            f"one round of every stratum needs {least:g} {costs.unit}")
    texts = _text_design(n, budget, costs, np.random.default_rng([seed, 0]), image_min)
    text_masks = texts.masks(texts.codes)
    images = _Side(m)
    scorer = _Scorer(product, images, texts, text_masks, costs, budget, max_batch, progress)
    rng = np.random.default_rng([seed, 1])

    if m <= MAX_EXACT_PATCHES and (1 << m) * scorer.row_cost + scorer.text_cost <= budget:
        scorer.score(list(range(1 << m)))
    else:
        _sample_images(scorer, images, texts, w, rng)

    values = scorer.values()
    phi, stderr, _ = _estimate(images, texts, values, w)
    corner = lambda img, txt: float(values[images.row[img], texts.row[txt]])  # noqa: E731
    full_image, full_text = (1 << m) - 1, (1 << n) - 1
    return InteractionEstimate(
        phi=phi,
        stderr=stderr,
        evaluations=len(images.codes) * len(texts.codes),
        method="product",
        index=index,
        seed=seed,
        budget=budget,
        v_full=corner(full_image, full_text),
        v_empty=corner(0, 0),
        v_image_only=corner(full_image, 0),
        v_text_only=corner(0, full_text),
    )


def _run_round(scorer: _Scorer, images: _Side, a: int, rng: np.random.Generator) -> tuple[bool, bool]:
    """Score one round of stratum a star by star; (whether every star fit, whether any mask was new)."""
    before = len(images.codes)
    fit = True
    for star in images.round(a, rng):
        if scorer.score(star):
            images.centres.add(star[0])
        else:
            fit = False
    return fit, len(images.codes) > before


def _sample_images(scorer: _Scorer, images: _Side, texts: _Side, w: np.ndarray, rng: np.random.Generator) -> None:
    """A pilot round of every stratum, Neyman enumeration of strata, then greedy rounds until the budget is spent."""
    m = images.k
    rounds = np.zeros(m, dtype=np.int64)
    for a in range(m):  # the pilot: the budget check in product_estimate guarantees that it fits
        if not images.exact(a):
            _run_round(scorer, images, a, rng)
            rounds[a] = 1
    sigma = np.sqrt(_estimate(images, texts, scorer.values(), w)[2])
    unit = np.array([_round_cost(m, a) for a in range(m)], dtype=np.float64) * scorer.row_cost
    per_round = np.array([-(-m // _window(m, a)) * _window(m, a) / m for a in range(m)])
    active = [a for a in range(m) if not images.exact(a)]

    # Enumerate the strata whose Neyman share would pay for their two layers (water-filling).
    while active:
        checkpoint()
        share = sigma[active] * np.sqrt(unit[active] / per_round[active])
        if share.sum() <= 0:
            break
        pool = scorer.remaining + float((rounds[active] * unit[active]).sum())
        target = pool * share / share.sum() - rounds[active] * unit[active]
        enumerate_cost = np.array([images.missing(a) * scorer.row_cost for a in active])
        ratio = np.where(enumerate_cost > 0, target / np.maximum(enumerate_cost, 1e-300), np.inf)
        best = int(np.argmax(ratio))
        a = active[best]
        if ratio[best] < 1 or comb(m, a + 1) > MAX_ENUMERATED_LAYER or not scorer.score(images.layers(a)):
            break
        active = [s for s in active if not images.exact(s)]

    # Greedy rounds: the largest variance reduction per cost, sigma^2 / (s c r (r + 1)).
    idle = np.zeros(m, dtype=np.int64)
    while True:
        checkpoint()
        active = [a for a in range(m) if not images.exact(a) and idle[a] < IDLE_ROUNDS]
        if not active:
            return
        r = np.maximum(rounds[active], 1)
        gain = (sigma[active] ** 2 + 1e-300) / (per_round[active] * unit[active] * r * (r + 1))
        a = active[int(np.argmax(gain))]
        fit, new = _run_round(scorer, images, a, rng)
        rounds[a] += 1
        idle[a] = 0 if new else idle[a] + 1
        if not fit:
            idle[a] = IDLE_ROUNDS


PRODUCT = Estimator(
    name="product",
    summary="stratified product designs for dual encoders: budget in encoder passes",
    description=("scores image masks x text masks as product designs (one encode per distinct mask), every text mask "
                 "when affordable, image masks in size-stratified stars with Neyman allocation and enumeration of "
                 "cheap strata"),
    reports="Φ with a standard error per entry",
    min_budget=min_budget,
    run=product_estimate,
)
