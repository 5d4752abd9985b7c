"""The `kernel` estimator: cross-modal interactions as Shapley values of derivative games, fitted by regression.

For a token j, the derivative game D_j(S) = v(S + j) - v(S) on the players N \\ {j} has
first-order Shapley value of patch i

    Sh_i(D_j) = sum_{S in N \\ {i,j}} |S|! (N - |S| - 2)! / (N - 1)! * Delta_ij(S) = SII_ij,

so one column of Phi is one Shapley-value problem (Banzhaf value and BII likewise). The
estimator draws base coalitions R and evaluates R together with R xor {j} for every player
j of the smaller modality (the "flip" side): each draw then yields one exact sample
D_j(R \\ {j}) for every flip player j at a cost of about 1 + |flip side| coalitions, and
each sample informs the whole column through a least-squares fit over all players.

Two estimates of each column come from the same rows:

- a KernelSHAP fit: the Shapley-kernel weighted least-squares problem, constrained by
  efficiency, has the Shapley values as its solution; sampled rows carry importance
  weights (kernel weight / share of their size drawn). Exact when D_j is additive, strong
  on games of low interaction order;
- stratified means (SVARM-style): Sh_i is the average over sizes of the mean of D_j with i
  present minus the mean with i absent. Unbiased whatever the interaction order.

They are mixed at the weight that minimises the column's variance, estimated with
leave-one-draw-out (jackknife) influences, which also give the standard errors; a fit with
too few rows to be trusted (a draw it interpolates) leaves the stratified estimate alone.
Draws are paired with their complements and sampled without replacement within a size;
sizes are drawn in proportion to the Shapley kernel's mass, and outer sizes are enumerated
outright when the budget would sample them more often than they have members (the
"border trick"). For BII the kernel is uniform and only the ordinary regression (with an
intercept) is used.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Optional

import numpy as np

from multishap.service.math.costs import CostModel
from multishap.service.math.interrupt import checkpoint
from multishap.service.math.estimators.anchors import anchor_values, register_anchors
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import BudgetExhausted, CoalitionStore, ProgressCallback, ValueFunction
from multishap.service.math.estimators.regression import standard_errors, weighted_least_squares
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.estimators.stratified import stratified_shapley
from multishap.service.math.estimators.weights import log_binom, shapley_kernel
from multishap.service import defaults

_MAX_IDLE_DRAWS = 10_000
# Largest coalition-size stratum the border trick will enumerate.
_MAX_ENUMERATED_STRATUM = 200_000


def min_budget(m: int, n: int) -> int:
    """Anchors, the flips of the empty and full coalitions, and one paired draw."""
    flips = min(m, n)
    return 4 + 2 * flips + 2 * (1 + flips)


def _with_flips(bases: np.ndarray, flip: np.ndarray) -> np.ndarray:
    """For each base row, the row itself followed by the row with each flip player toggled."""
    f = len(flip)
    rows = np.repeat(bases, 1 + f, axis=0)
    idx = np.arange(len(bases))[:, None] * (1 + f) + 1 + np.arange(f)[None, :]
    rows[idx, flip[None, :]] ^= True
    return rows


@lru_cache(maxsize=32)
def _stratum(n_players: int, size: int) -> np.ndarray:
    """All coalitions of the given size, as bool rows (read-only; cached, since every
    flip player's fit asks for the same strata)."""
    combos = np.array(list(combinations(range(n_players), size)), dtype=np.int64)
    rows = np.zeros((len(combos), n_players), dtype=bool)
    rows[np.arange(len(combos))[:, None], combos] = True
    rows.setflags(write=False)
    return rows


class _Design:
    """Which base coalitions were evaluated: enumerated sizes and sampled bases.

    Sizes follow ``mass`` (the Shapley kernel's mass per size for SII, binomial for BII);
    within a size, bases are drawn without replacement, so each sampled base of size s
    stands for members[s] / drawn[s] coalitions (post-stratified weights).
    """

    def __init__(self, n_players: int, index: str) -> None:
        self.n = n_players
        s = np.arange(n_players + 1)
        if index == "SII":
            mass = np.zeros(n_players + 1)
            mass[1:n_players] = 1.0 / (s[1:n_players] * (n_players - s[1:n_players]))
        else:
            mass = np.exp(log_binom(n_players, s) - n_players * np.log(2.0))
        self.mass = mass / mass.sum()
        self.members = np.round(np.exp(log_binom(n_players, s)))
        self.enumerated = np.zeros(n_players + 1, dtype=bool)
        self.enumerated[[0, n_players]] = index == "SII"
        self.bases = np.zeros((0, n_players), dtype=bool)
        self.clusters = np.zeros(0, dtype=np.int64)
        self.n_clusters = 0

    def probabilities(self) -> np.ndarray:
        """Size distribution of sampled bases (zero on enumerated sizes)."""
        q = np.where(self.enumerated, 0.0, self.mass)
        return q / q.sum() if q.sum() > 0 else q

    def inclusion(self) -> np.ndarray:
        """Share of each size's coalitions drawn as sampled bases (0 on enumerated sizes)."""
        drawn = np.bincount(self.bases.sum(axis=1), minlength=self.n + 1)
        return np.where(self.enumerated, 0.0, drawn / self.members)

    def sampled_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Sampled bases outside enumerated sizes, with the draw each came from."""
        keep = ~self.enumerated[self.bases.sum(axis=1)]
        return self.bases[keep], self.clusters[keep]


def _enumerate_borders(store: CoalitionStore, design: _Design, flip: np.ndarray) -> None:
    """Enumerate outer size strata while that costs no more than sampling would spend there.

    Sampling would give a size pair the budget share ``remaining * q``; enumerating it costs
    its coalitions not yet registered (flips of neighbouring sizes overlap), counted exactly.
    """
    n_players = design.n
    for size in range(1, n_players // 2 + 1):
        sizes = sorted({size, n_players - size})
        if design.enumerated[sizes].all():
            continue
        checkpoint()
        if design.members[sizes].sum() > _MAX_ENUMERATED_STRATUM:
            return
        rows = _with_flips(np.concatenate([_stratum(n_players, s) for s in sizes]), flip)
        share = store.remaining * design.probabilities()[sizes].sum()
        cost = store.count_new(rows)
        if cost > share or cost > store.remaining:
            return
        store.register(rows)
        design.enumerated[sizes] = True


def _sample_bases(
    store: CoalitionStore, design: _Design, flip: np.ndarray, rng: np.random.Generator
) -> None:
    """Draw bases paired with their complements until the budget is spent.

    A base already drawn is drawn again (sampling without replacement within a size); a
    size whose every coalition has been drawn becomes enumerated and leaves the design.
    """
    n_players = design.n
    sizes = np.arange(n_players + 1)
    seen: set[bytes] = set()
    bases: list[np.ndarray] = []
    clusters: list[int] = []
    drawn = np.zeros(n_players + 1, dtype=np.int64)
    draw = 0
    idle = 0
    while store.remaining > 0 and idle < _MAX_IDLE_DRAWS:
        checkpoint()
        q = design.probabilities()
        if q.sum() == 0:
            break
        size = int(rng.choice(sizes, p=q))
        base = np.zeros(n_players, dtype=bool)
        base[rng.permutation(n_players)[:size]] = True
        if np.packbits(base).tobytes() in seen:
            idle += 1
            continue
        pair = np.stack([base, ~base])
        try:
            store.register(_with_flips(pair, flip))
        except BudgetExhausted:
            break
        idle = 0
        for row in pair:
            key = np.packbits(row).tobytes()
            if key not in seen:
                seen.add(key)
                bases.append(row)
                clusters.append(draw)
                drawn[row.sum()] += 1
        draw += 1
        design.enumerated |= drawn == design.members
    if bases:
        design.bases = np.stack(bases)
        design.clusters = np.asarray(clusters, dtype=np.int64)
        design.n_clusters = draw


def _stratum_rows(n_players: int, complete: np.ndarray, kernel: np.ndarray, skip_ends: bool):
    """Exact rows: every coalition of each complete size, at its kernel weight."""
    rows, weights = [], []
    for size in np.flatnonzero(complete):
        if skip_ends and size in (0, n_players):
            continue
        stratum = _stratum(n_players, int(size))
        rows.append(stratum)
        weights.append(np.full(len(stratum), kernel[size]))
    return rows, weights


def _solve(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, clusters: np.ndarray, n_clusters: int, index: str
) -> tuple[np.ndarray, np.ndarray]:
    """Fit the values of a game from rows x (for SII the first two rows are the empty and
    the full coalition); returns the values and their per-draw influence.

    SII: Shapley-kernel fit constrained by efficiency, y offset by v(empty). BII: ordinary
    fit with an intercept over all rows.
    """
    if index == "SII":
        z = x[2:].astype(np.float64)
        return weighted_least_squares(z, y[2:] - y[0], w, clusters, y[1] - y[0], n_clusters)
    z = np.hstack([np.ones((len(x), 1)), x.astype(np.float64)])
    beta, influence = weighted_least_squares(z, y, w, clusters, None, n_clusters)
    return beta[1:], influence[:, 1:]


def _combine(
    fit: tuple[np.ndarray, np.ndarray], strat: tuple[np.ndarray, np.ndarray], report: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Variance-optimal mix lambda * fit + (1 - lambda) * strat of two estimates from the
    same draws, lambda pooled over the reported entries; returns values and influence."""
    (a, ia), (b, ib) = fit, strat
    va = (ia[:, report] ** 2).sum()
    vb = (ib[:, report] ** 2).sum()
    if not np.isfinite(va):
        return (b, ib) if np.isfinite(vb) else (a, ia)
    cov = (ia[:, report] * ib[:, report]).sum()
    denominator = va + vb - 2.0 * cov
    lam = float(np.clip((vb - cov) / denominator, 0.0, 1.0)) if denominator > 0 else 1.0
    return lam * a + (1.0 - lam) * b, lam * ia + (1.0 - lam) * ib


def _ends(n_players: int) -> np.ndarray:
    ends = np.zeros((2, n_players), dtype=bool)
    ends[1] = True
    return ends


def _fit_derivative_game(
    store: CoalitionStore, design: _Design, j: int, index: str, report: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Shapley (SII) or Banzhaf (BII) values of all players in D_j, with standard errors.

    A coalition S of N \\ {j} with |S| = t arises from a base of size t (j absent) or of
    size t + 1 (j present); its weight is the kernel weight over the share of those bases
    drawn. Sizes covered by an enumerated base size are exact. For SII the kernel fit is
    mixed with a stratified estimate from the same rows (weight chosen to minimise the
    variance of the ``report`` entries): the fit wins on games close to additive in each
    D_j, the strata on games with high-order interactions.
    """
    checkpoint()
    n_players = design.n
    others = np.delete(np.arange(n_players), j)
    n_sub = n_players - 1
    kernel = shapley_kernel(n_sub) if index == "SII" else np.full(n_sub + 1, 2.0 ** -n_sub)
    complete = design.enumerated[:-1] | design.enumerated[1:]
    rows, weights = _stratum_rows(n_sub, complete, kernel, skip_ends=index == "SII")
    clusters = [np.full(len(r), -1) for r in rows]

    bases, base_clusters = design.sampled_rows()
    sub = bases[:, others]
    size = sub.sum(axis=1)
    keep = ~complete[size]
    inclusion = design.inclusion()
    size = size[keep]
    rows.append(sub[keep])
    weights.append(kernel[size] / (inclusion[size] + inclusion[size + 1]))
    clusters.append(base_clusters[keep])

    head = [_ends(n_sub)] if index == "SII" else []
    x = np.concatenate(head + rows)
    without = np.zeros((len(x), n_players), dtype=bool)
    without[:, others] = x
    with_j = without.copy()
    with_j[:, j] = True
    d = store.values(store.register(with_j)) - store.values(store.register(without))
    cl = np.concatenate(clusters)
    n_clusters = design.n_clusters
    checkpoint()
    beta, influence = _solve(x, d, np.concatenate(weights), cl, n_clusters, index)
    checkpoint()
    if index == "SII":
        # Stratified estimate of D_j minus the additive game that shares D_j(N) - D_j(empty)
        # equally (a control variate with known Shapley values), so both ends are zero.
        share = (d[1] - d[0]) / n_sub
        residual = d[2:] - d[0] - x[2:].sum(axis=1) * share
        strat, strat_influence = stratified_shapley(x[2:], residual, cl, n_clusters)
        beta, influence = _combine((beta, influence), (strat + share, strat_influence), report[others])
    full_beta = np.zeros(n_players)
    full_se = np.zeros(n_players)
    full_beta[others] = beta
    full_se[others] = standard_errors(influence)
    return full_beta, full_se


def _fit_shapley(store: CoalitionStore, design: _Design) -> np.ndarray:
    """First-order Shapley values of v from the base coalitions (KernelSHAP fit)."""
    n_players = design.n
    kernel = shapley_kernel(n_players)
    rows, weights = _stratum_rows(n_players, design.enumerated, kernel, skip_ends=True)
    clusters = [np.full(len(r), -1) for r in rows]
    bases, base_clusters = design.sampled_rows()
    size = bases.sum(axis=1)
    rows.append(bases)
    weights.append(kernel[size] / design.inclusion()[size])
    clusters.append(base_clusters)
    x = np.concatenate([_ends(n_players)] + rows)
    v = store.values(store.register(x))
    beta, _ = _solve(x, v, np.concatenate(weights), np.concatenate(clusters), design.n_clusters, "SII")
    return beta


def kernel_estimate(
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
    """Estimate the cross-modal SII (or BII) by regression on derivative games."""
    n_players = m + n
    store = CoalitionStore(value_fn, n_players, budget, max_batch, progress, costs, m)
    anchor_ids = register_anchors(store, m, n)
    flip_tokens = n <= m
    flip = np.arange(m, n_players) if flip_tokens else np.arange(m)
    design = _Design(n_players, index)
    store.register(_with_flips(_ends(n_players), flip))
    _enumerate_borders(store, design, flip)
    _sample_bases(store, design, flip, np.random.default_rng(seed))

    phi = np.zeros((m, n))
    stderr = np.zeros((m, n))
    report = np.zeros(n_players, dtype=bool)
    report[np.arange(m, n_players) if not flip_tokens else np.arange(m)] = True
    for k, j in enumerate(flip):
        beta, se = _fit_derivative_game(store, design, int(j), index, report)
        if flip_tokens:
            phi[:, k], stderr[:, k] = beta[:m], se[:m]
        else:
            phi[k, :], stderr[k, :] = beta[m:], se[m:]
    shapley = _fit_shapley(store, design) if index == "SII" else None
    return InteractionEstimate(
        phi=phi,
        stderr=stderr,
        evaluations=store.size,
        method="kernel",
        index=index,
        seed=seed,
        budget=budget,
        shapley=shapley,
        **anchor_values(store, anchor_ids),
    )


KERNEL = Estimator(
    name="kernel",
    summary="Shapley-kernel regression on derivative games (the most accurate per evaluation on synthetic games)",
    description=("for each player j of the smaller modality, Φ's line for j (a column for a token) is the Shapley "
                 "value vector of the derivative game D_j(S) = v(S∪{j}) − v(S); bases R are evaluated with every such "
                 "player flipped (one exact D_j sample per player for about 1 + min(m, n) coalitions), and each line "
                 "mixes a Shapley-kernel regression with stratified means at the variance-optimal weight (paired "
                 "draws, outer sizes enumerated, jackknife standard errors)"),
    reports="Φ with jackknife standard errors, and the players' Shapley values (SII)",
    min_budget=min_budget,
    run=kernel_estimate,
)
