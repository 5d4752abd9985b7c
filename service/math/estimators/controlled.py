"""The `controlled` estimator: Algorithm 1's pair samples, sizes allocated by variance, control variates.

Φ_ij is the mean of Δ_ij(S) under the index's law of S over N \\ {i, j}. That law is known
exactly: for SII, |S| is uniform on 0..N-2 and S uniform given its size, so the joint law of
(patches present, tokens present) is the same for every pair (BII: every other player present
with probability 1/2). Two things follow.

- Sizes need not be drawn as the index weights them. Algorithm 1's draw gives every size the
  same share of the budget; here, after a first share drawn that way, the sizes of later steps
  follow a Neyman allocation (share ~ pooled spread of Δ at that size / sqrt(pair samples a
  coalition buys there)) when that promises ``_MIN_GAIN`` times less variance, with half of the
  pair samples still drawn at Algorithm 1's sizes so no size is starved. Samples
  carry importance weights (the index's size law over the mixture's), re-estimated in epochs
  at fixed spending marks, so the draws do not depend on the budget and nest across budgets.
- Any feature f(S) has a known mean μ_f, and the regression estimator (the weighted fit of
  Δ_ij on f with intercept, read at μ_f) stays consistent while it removes what f explains.

Four estimates of each entry come from the same samples: size strata (post-stratification on
|S| in bins of about six samples; the weighted mean when a pair has too few); a quadratic in |S|; the shares of
patches and tokens present (with squares and product); and every other player's indicator
(third-order terms i, j, k are linear in them; a ridge fit); the regressions only once a pair
has enough samples. Their leave-one-sample-out (jackknife) influences give variances and
covariances; they are mixed with one set of non-negative weights pooled over all entries that
minimises the total variance, and the mixed influences give the standard errors, shrunk toward
the pooled per-sample variance so that a pair whose few samples agree is not declared exact.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from multishap.service import defaults
from multishap.service.math.costs import CostModel
from multishap.service.math.estimators.anchors import anchor_values, register_anchors
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import CoalitionStore, ProgressCallback, ValueFunction
from multishap.service.math.estimators.multishap import alg1_sizes, draw_steps, min_budget, step_deltas
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.estimators.weights import log_binom
from multishap.service.math.interrupt import checkpoint

# Samples a pair needs per coefficient before a regression estimate is used for it.
_SAMPLES_PER_COEFFICIENT = 2.0
# Ridge penalty, per unit of sample weight, on the player coefficients; and the samples it needs.
_RIDGE = 1.0
_MIN_RIDGE_SAMPLES = 8
_RIDGE_SAMPLES_PER_COEFFICIENT = 0.25
# Samples per size stratum a pair's post-stratification aims for.
_SAMPLES_PER_BIN = 6
# Weight, in samples, of the pooled variance in each entry's standard error.
_PRIOR_SAMPLES = 2.0
# Agreeing samples, per player, after which an entry's zero spread is believed.
_CONSTANT_SAMPLES = 5.0
# Share of each later epoch's pair samples drawn at Algorithm 1's (uniform) sizes rather than by Neyman allocation.
_DEFENSIVE = 0.5
# Predicted variance reduction below which the allocation keeps Algorithm 1's law (weights cost variance).
_MIN_GAIN = 1.25
# Size bins over which the spread of Δ is pooled for the allocation.
_ALLOCATION_BINS = 12


def presence_law(m: int, n: int, index: str) -> np.ndarray:
    """P(a patches and b tokens present) for S drawn over N \\ {i, j} by the index; (m, n) over a, b."""
    a = np.arange(m)[:, None]
    b = np.arange(n)[None, :]
    counts = log_binom(m - 1, a) + log_binom(n - 1, b)
    if index == "SII":
        return np.exp(counts - log_binom(m + n - 2, a + b)) / (m + n - 1)
    return np.exp(counts - (m + n - 2) * np.log(2.0))


def _size_features(a: np.ndarray, b: np.ndarray, m: int, n: int) -> np.ndarray:
    """Shares u, w of patches and tokens present (pair excluded), with u², w², uw."""
    u = a / max(m - 1, 1)
    w = b / max(n - 1, 1)
    return np.stack([u, w, u * u, w * w, u * w], axis=-1)


def _poly_features(s: np.ndarray, n_players: int) -> np.ndarray:
    """P(one, two given others in S | |S| = s): the size terms of third- and fourth-order interactions."""
    others = max(n_players - 2, 2)
    return np.stack([s / others, s * (s - 1.0) / (others * (others - 1.0))], axis=-1)


def _fit(z: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray, ridge: float = 0.0) -> Optional[tuple[float, np.ndarray]]:
    """Weighted least squares of y on z, read at the features' known mean c (c . theta).

    ``ridge`` penalises every coefficient but the first (the intercept), which keeps a fit
    with nearly as many coefficients as samples stable; it shrinks toward the plain mean, so
    the estimate stays consistent. Returns the estimate and its centred jackknife influences,
    scaled so that their squares sum to the jackknife variance; None when a sample has
    leverage near 1.
    """
    rows = len(y)
    zw = z * w[:, None]
    penalty = np.full(z.shape[1], ridge * w.mean())
    penalty[0] = 0.0
    gram_inv = np.linalg.pinv(zw.T @ z + np.diag(penalty), hermitian=True)
    theta = gram_inv @ (zw.T @ y)
    g = z @ gram_inv
    leverage = np.einsum("ij,ij->i", g, z) * w
    if leverage.max() > 1.0 - 1e-6:
        return None
    d = (g @ c) * w * (y - z @ theta) / (1.0 - leverage)
    d -= d.mean()
    return float(c @ theta), d * np.sqrt((rows - 1) / rows)


def _size_bins(sizes: np.ndarray, law: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous size bins of about equal probability, merged until each holds two samples.

    Returns each sample's bin and each bin's probability under the index's law of |S|.
    """
    edges = np.searchsorted(np.cumsum(law), np.arange(1, n_bins) / n_bins, side="left") + 1
    bins = list(np.split(np.arange(len(law)), np.unique(np.clip(edges, 1, len(law) - 1))))
    counts = [int(np.isin(sizes, b).sum()) for b in bins]
    k = 0
    while k < len(bins) and len(bins) > 1:
        if counts[k] >= 2:
            k += 1
            continue
        other = k - 1 if k == len(bins) - 1 or (k > 0 and counts[k - 1] < counts[k + 1]) else k + 1
        lo, hi = min(k, other), max(k, other)
        bins[lo:hi + 1] = [np.concatenate([bins[lo], bins[hi]])]
        counts[lo:hi + 1] = [counts[lo] + counts[hi]]
        k = lo
    label = np.zeros(len(law), dtype=np.int64)
    for b, members in enumerate(bins):
        label[members] = b
    return label[sizes], np.array([law[b].sum() for b in bins])


def _mix_weights(cov: np.ndarray) -> np.ndarray:
    """Weights summing to 1, each >= 0, minimising w' cov w (drop the most negative and refit)."""
    active = list(range(len(cov)))
    while True:
        x = np.linalg.pinv(cov[np.ix_(active, active)], hermitian=True) @ np.ones(len(active))
        if x.sum() <= 0 or not np.all(np.isfinite(x)):
            x = np.zeros(len(active))
            x[int(np.argmin(np.diag(cov)[active]))] = 1.0
        x /= x.sum()
        if (x >= 0).all():
            out = np.zeros(len(cov))
            out[active] = x
            return out
        active.pop(int(np.argmin(x)))


def _shrink(variance: np.ndarray, count: np.ndarray, n_players: int) -> np.ndarray:
    """Each entry's variance pulled toward the pooled per-sample variance over its count.

    A pair whose few samples happen to agree (a high-order term not drawn yet) would otherwise
    report a standard error of 0; the prior carries ``_PRIOR_SAMPLES`` samples' weight, and the
    variance is scaled by df / (df - 2), the variance of a t variable on df degrees of freedom. Any
    Moebius term reaches Δ_ij with probability at least 1 / (N - 1) per SII sample, so samples
    that agree ``_CONSTANT_SAMPLES`` * (N - 1) times keep their 0.
    """
    seen = np.isfinite(variance)
    if not seen.any():
        return variance
    pooled = float(np.mean(variance[seen] * count[seen]))
    prior = np.divide(pooled, count, out=np.full(count.shape, np.inf), where=count > 0)
    own = np.maximum(count - 1.0, 0.0)
    df = own + _PRIOR_SAMPLES
    with np.errstate(invalid="ignore"):
        # The df / (df - 2) factor makes a t-distributed error's RMS over its stderr 1.
        shrunk = (own * variance + _PRIOR_SAMPLES * prior) / df * df / np.maximum(df - 2.0, 1.0)
    settled = (variance == 0) & (count >= _CONSTANT_SAMPLES * (n_players - 1))
    return np.where(seen & ~settled, shrunk, variance)


def controlled_phi(
    present: np.ndarray, deltas: np.ndarray, sampled: np.ndarray, rho: np.ndarray, m: int, n: int, index: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Φ and standard errors from Algorithm 1's samples.

    ``present`` (T, m + n) is each step's S, ``deltas`` (T, m, n) its Δ_ij(S), ``sampled``
    (T, m, n) whether pair (i, j) was absent in it and ``rho`` (T,) its importance weight.
    Returns (phi, stderr, the mixing weights of the four estimates).
    """
    n_players = m + n
    law = presence_law(m, n, index)
    a_grid, b_grid = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    size_law = np.bincount((a_grid + b_grid).ravel(), weights=law.ravel(), minlength=n_players - 1)
    shares = _size_features(a_grid, b_grid, m, n)
    share_f = _size_features(present[:, :m].sum(axis=1), present[:, m:].sum(axis=1), m, n)
    share_f -= np.tensordot(law, shares, axes=([0, 1], [0, 1]))
    sizes = present.sum(axis=1)
    poly_f = _poly_features(sizes, n_players) - size_law @ _poly_features(np.arange(n_players - 1), n_players)
    player_f = present.astype(np.float64) - 0.5
    k = 4
    estimates = np.zeros((k, m, n))
    influences: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
    cov = np.zeros((k, k))
    for i in range(m):
        checkpoint()
        for j in range(n):
            rows = np.flatnonzero(sampled[:, i, j])
            y, w = deltas[rows, i, j], rho[rows]
            if len(rows) < 2:
                estimates[:, i, j] = y.mean() if len(rows) else 0.0
                influences[i, j] = (rows, np.full((k, len(rows)), np.inf))
                continue
            ones = np.ones((len(rows), 1))
            label, weight = _size_bins(sizes[rows], size_law, max(1, int(len(rows) // _SAMPLES_PER_BIN)))
            fits = [_fit(np.eye(len(weight))[label], y, w, weight) or _fit(ones, y, w, np.ones(1))]
            keep = np.ones(n_players, dtype=bool)
            keep[[i, m + j]] = False
            for features, ridge in ((poly_f[rows], 0.0), (share_f[rows], 0.0), (player_f[rows][:, keep], _RIDGE)):
                c = np.zeros(1 + features.shape[1])
                c[0] = 1.0
                per = _RIDGE_SAMPLES_PER_COEFFICIENT if ridge else _SAMPLES_PER_COEFFICIENT
                enough = len(rows) >= max(_MIN_RIDGE_SAMPLES, per * len(c))
                fit = _fit(np.hstack([ones, features]), y, w, c, ridge) if enough else None
                fits.append(fit if fit is not None else fits[-1])
            estimates[:, i, j] = [f[0] for f in fits]
            d = np.stack([f[1] for f in fits])
            influences[i, j] = (rows, d)
            cov += d @ d.T
    weights = _mix_weights(cov)
    phi = np.tensordot(weights, estimates, axes=1)
    variance = np.full((m, n), np.inf)
    count = np.zeros((m, n))
    for (i, j), (rows, d) in influences.items():
        w = rho[rows]
        count[i, j] = w.sum() ** 2 / (w**2).sum() if len(rows) else 0.0
        if len(rows) >= 2:
            variance[i, j] = float(((weights @ d) ** 2).sum())
    return phi, np.sqrt(_shrink(variance, count, n_players)), weights


def _pair_share(n_players: int) -> np.ndarray:
    """P(a given patch and token are both absent | |S| = s), s = 0..N-2."""
    s = np.arange(n_players - 1)
    return (n_players - s) * (n_players - s - 1.0) / (n_players * (n_players - 1.0))


def _step_cost(m: int, n: int) -> np.ndarray:
    """Expected coalitions of a step at each size s = 0..N-2: E[(absent patches + 1)(absent tokens + 1)]."""
    big_n = m + n
    s = np.arange(big_n - 1)
    return m * n * _pair_share(big_n) + (m + n) * (big_n - s) / big_n + 1.0


def _neyman_sizes(sizes: np.ndarray, deltas: np.ndarray, sampled: np.ndarray, m: int, n: int) -> np.ndarray:
    """Law of |S| for the next epoch: Neyman allocation from the pooled within-size spread of Δ, mixed with Algorithm 1's."""
    big_n = m + n
    edges = np.linspace(0, big_n - 1, min(_ALLOCATION_BINS, big_n - 1) + 1)
    label = np.clip(np.searchsorted(edges, np.arange(big_n - 1), side="right") - 1, 0, len(edges) - 2)
    spread = np.full(len(edges) - 1, np.nan)
    for b in range(len(spread)):
        steps = label[sizes] == b
        count = sampled[steps].sum(axis=0)
        if (count >= 2).any():
            total = deltas[steps].sum(axis=0)
            square = (deltas[steps] ** 2).sum(axis=0)
            within = np.where(count >= 2, square - np.divide(total**2, count, where=count > 0, out=np.zeros_like(total)), 0)
            spread[b] = np.sqrt(max(within.sum(), 0.0) / np.maximum(count - 1, 0).sum())
    if not np.isfinite(spread).any() or np.nanmax(spread) <= 0:
        return alg1_sizes(big_n)
    sigma = np.where(np.isfinite(spread), spread, np.nanmax(spread))[label]
    share, cost = _pair_share(big_n), _step_cost(m, n)
    neyman = sigma / np.sqrt(share * cost)
    # Mixed in the law of pair samples (what the weights divide by), so no weight exceeds 1 / _DEFENSIVE.
    pairs = neyman * share
    mixed = (_DEFENSIVE / (big_n - 1) + (1.0 - _DEFENSIVE) * pairs / pairs.sum()) / share
    mixed /= mixed.sum()
    # Stratified variance per unit of budget under a law of sizes: sum_s sigma_s^2 / samples_s.
    variance = lambda q: float(np.sum(sigma**2 / (q * share)) * np.sum(q * cost))  # noqa: E731
    return mixed if variance(alg1_sizes(big_n)) >= _MIN_GAIN * variance(mixed) else alg1_sizes(big_n)


def _first_epoch(m: int, n: int) -> float:
    """Spending after which the sizes are first re-allocated; later marks double it."""
    return max(2000.0, 4.0 * min_budget(m, n))


def controlled_estimate(
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
    """Estimate the cross-modal SII (or BII) from Algorithm 1's samples with adaptive sizes and control variates."""
    big_n = m + n
    store = CoalitionStore(value_fn, big_n, budget, max_batch, progress, costs, m)
    anchor_ids = register_anchors(store, m, n)
    rng = np.random.default_rng(seed)
    q = alg1_sizes(big_n)
    mark = _first_epoch(m, n)
    steps: list = []
    mixture = np.zeros(big_n - 1)
    deltas = np.zeros((0, m, n))
    sampled = np.zeros((0, m, n), dtype=bool)
    while True:
        new, draws, spent = draw_steps(store, m, n, rng, index, q, mark if index == "SII" else np.inf)
        mixture += draws * q
        values = store.values(np.arange(store.size))
        grown_d = np.zeros((len(new), m, n))
        grown_s = np.zeros((len(new), m, n), dtype=bool)
        for t, (_, pats, toks, ids) in enumerate(new):
            grown_d[t][np.ix_(pats, toks)] = step_deltas(values, pats, toks, ids)
            grown_s[t][np.ix_(pats, toks)] = True
        steps += new
        deltas, sampled = np.concatenate([deltas, grown_d]), np.concatenate([sampled, grown_s])
        if spent:
            break
        present = np.array([s[0] for s in steps], dtype=bool).reshape(len(steps), big_n)
        q = _neyman_sizes(present.sum(axis=1), deltas, sampled, m, n)
        mark *= 2
    present = np.array([s[0] for s in steps], dtype=bool).reshape(len(steps), big_n)
    if index == "SII":
        # Importance weight of a pair sample at size s: the index's uniform size law over the
        # mixture's law of the sizes at which a pair is sampled.
        density = mixture * _pair_share(big_n)
        rho = (density.sum() / (big_n - 1) / np.maximum(density, 1e-300))[present.sum(axis=1)]
    else:
        rho = np.ones(len(steps))
    phi, stderr, _ = controlled_phi(present, deltas, sampled, rho, m, n, index)
    return InteractionEstimate(
        phi=phi,
        stderr=stderr,
        evaluations=store.size,
        method="controlled",
        index=index,
        seed=seed,
        budget=budget,
        **anchor_values(store, anchor_ids),
    )


CONTROLLED = Estimator(
    name="controlled",
    summary="Algorithm 1's pair samples with sizes allocated by variance and control variates, mixed by jackknife variance",
    description=("Algorithm 1's design (one Δ_ij(S) sample per absent pair and step), with the sizes of later steps "
                 "drawn by a Neyman allocation estimated from earlier ones when it promises 1.25× less variance "
                 "(half the pair samples still at Algorithm 1's sizes; importance weights restore the SII "
                 "distribution); each entry's samples are post-stratified on |S| and "
                 "regression-adjusted on size terms, modality shares and every other player's indicator, whose "
                 "means under the index's distribution are known exactly; the four are mixed with weights pooled over "
                 "Φ that minimise their jackknife variance, and the standard errors are shrunk toward the pooled "
                 "variance"),
    reports="Φ with a standard error per entry",
    min_budget=min_budget,
    run=controlled_estimate,
)
