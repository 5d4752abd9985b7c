"""The `sparse` estimator: exact recovery of games with few Moebius coefficients, else a dense fallback.

Every game is v(S) = sum_{T subset of S} a_T (its Moebius transform a). When few a_T are
non-zero, the estimator finds all of them and Phi follows in closed form:

    SII_ij = sum_{T >= {i,j}} a_T / (|T| - 1)       BII_ij = sum_{T >= {i,j}} a_T / 2^(|T|-2)

Recovery works on *nodes*. A node is a list of disjoint blocks of players B_1..B_k and
stands for the terms whose players lie in the union of the blocks and meet every block:

    F(B_1..B_k) = sum_{T subset of B_1 u ... u B_k, T meets every B_i} a_T
                = sum_{I subset of {1..k}} (-1)^(k-|I|) v(union_{i in I} B_i)     (2^k coalitions)

1. Probe (aliasing). The players are split at random into b groups and v is scored on all
   2^b unions of groups; a b-bit Moebius transform gives F of every set of groups at once.
   Each term lands in the node of the groups it meets; non-zero nodes are kept. 2^b is the
   largest power of two within 2.5% of the budget, with groups of two players or more
   (b = N, the whole transform, when all 2^N coalitions fit in that share).
2. Refinement. Each round splits, in every node, its largest block B into halves L, R and
   scores F(..L..); if it equals F(..B..) every term of the node avoids R (a term hitting R
   would have to cancel exactly - a null set for generic coefficients) and the node becomes
   (..L..). Otherwise F(..R..) is scored too and the node has up to three children (..L..),
   (..R..), (..L, R..), the last one free as F - F(..L..) - F(..R..). Zero children are
   dropped; a node whose blocks are all single players is a term, T = its players, a_T = F.
   Tests are cheap because F is taken over the residual r = v - (terms found so far): a
   union S of the blocks can hold a term of another open node Y only if S meets every block
   of Y, so r(S) is scored only for such S and the full union, and taken as 0 elsewhere -
   about one coalition per test once blocks are small, instead of 2^(k-1). Rounds are
   batched over nodes, so the coalitions (and the result) do not depend on ``max_batch``.
3. Verification. The recovered game must reproduce every coalition scored so far and a
   held-out set of random dense coalitions (players present with probability 1/2 to 0.95,
   so a missed term of order 4 shows in a third of them) to ``_CHECK`` times the zero threshold.

Non-sparsity is detected from the estimator's own data. Before every round the coalitions
each open node still needs are predicted: 1.5 tests per halving (F(..L..) always, F(..R..)
half the time), ceil(log2 |B|) halvings per block, plus twice the unions the node's next
test shares with other nodes (they halve with its blocks). The game is taken as dense after
the probe when more than 75% of the 2^b - 1 nodes are non-zero (a sparse game fills at most
as many as it has terms, a dense one all) or the prediction exceeds the budget left: then
the whole budget left goes to ``dense`` (the `pilot` estimator by default). A later
prediction above the budget left parks the costliest nodes until the rest fit in half of
it. Parked nodes, a node of more than ``_MAX_BLOCKS`` blocks, a round the budget cannot pay
for, or a failed verification end the sparse phase, and ``dense`` estimates the residual
game v - (terms found) on the budget left: Phi is linear, so Phi = Phi(terms found) +
Phi(residual) whatever was found, and the residual is simpler than v. The dense estimator
reads the coalitions already scored from memory; a game dense from the start loses only the
probe, 1.25-2.5% of the budget (measured at 10k coalitions on the mlp and bilinear games, 20
seeds: 0.7% and 1.2% more error than the dense estimator alone, +-0.5%).

Standard errors: when recovery is verified, every entry gets the same small bound, the
larger of the verification's largest residual and the zero threshold below which a Moebius
coefficient cannot be told from rounding; it is not a sampling error - an exact recovery
has none - and is honest only under the premise, checked on the held-out coalitions, that
no term was missed. After a fallback they are the dense estimator's (on the residual game).

Limits: values must be reproducible to their rounding (float64, or float32 detected from the
probe); noisy or merely approximately sparse games (most real models) have no zero nodes and
go to the fallback, gaining nothing. Exact cancellation inside a node (coefficients summing
to zero) is assumed away, and caught by verification when it happens.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import floor
from typing import Callable, Optional

import numpy as np

from multishap.service import defaults
from multishap.service.math.costs import CostModel
from multishap.service.math.estimators.anchors import anchor_masks, anchor_values, register_anchors
from multishap.service.math.estimators.base import Estimator
from multishap.service.math.estimators.coalitions import (
    BudgetExhausted, CoalitionStore, ProgressCallback, ValueFunction, check_values,
)
from multishap.service.math.estimators.pilot import min_budget as dense_min_budget_default
from multishap.service.math.estimators.pilot import pilot_estimate
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.games import MobiusGame

DenseEstimator = Callable[..., InteractionEstimate]

# Share of the budget the probe may take (2^b coalitions, b the largest that fits).
_PROBE_SHARE = 0.025
_MIN_PROBE_BITS = 4
_MAX_PROBE_BITS = 14
# After the probe, the game is dense if more than this share of its nodes is non-zero.
_DENSE_SHARE = 0.75
# A node with more blocks (2^k coalitions per F) is taken as a sign of a dense game.
_MAX_BLOCKS = 12
# Zero threshold for F: the larger of _ZERO_TOL * scale and the worst rounding of a b-bit Moebius
# transform, _ROUNDING * 2^b * eps * scale, eps the unit roundoff of the values (float32 when every
# probe value is a float32, as a model's scores usually are). Verification allows _CHECK times that.
_ZERO_TOL = 1e-9
_ROUNDING = 4.0
_CHECK = 16.0
_HOLDOUT = 32
# Cost model of refinement: tests per halving (F(..L..) always, F(..R..) half the time), and the
# factor on a node's shared unions (they halve with its blocks: 1 + 1/2 + 1/4 + ... = 2).
_TESTS_PER_HALVING = 1.5
_SHARED_DECAY = 2.0


@dataclass(frozen=True)
class SparseReport:
    """What the sparse phase did: ``outcome`` is "recovered" or why it fell back
    ("dense probe", "budget", "too many blocks", "verification"); ``terms`` are the Moebius
    terms (players, coefficient) recovered - all of them, the empty set's included, when
    recovered, else those found before the fallback; ``sparse_evaluations`` counts the
    coalitions the sparse phase scored; ``residual`` is verification's largest |v - v_hat|."""

    outcome: str
    terms: tuple[tuple[tuple[int, ...], float], ...]
    sparse_evaluations: int
    residual: float


@dataclass(frozen=True)
class _Node:
    blocks: tuple[np.ndarray, ...]
    value: float

    @property
    def is_term(self) -> bool:
        return all(len(b) == 1 for b in self.blocks)


class _FallBack(Exception):
    """Raised inside the sparse phase when the game is judged not sparse; carries the reason."""


def min_budget(m: int, n: int) -> int:
    """Anchors, the smallest probe, and what the dense fallback needs."""
    return 4 + (1 << _MIN_PROBE_BITS) + dense_min_budget_default(m, n)


def _union_rows(blocks: tuple[np.ndarray, ...], codes: np.ndarray, n_players: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the unions S_I of the blocks for subset codes I (bit j = block j), with the
    inclusion-exclusion sign (-1)^(k - |I|) of each."""
    k = len(blocks)
    incidence = np.zeros((k, n_players), dtype=np.int64)
    for j, block in enumerate(blocks):
        incidence[j, block] = 1
    chosen = (codes[:, None] >> np.arange(k)[None, :]) & 1
    signs = np.where((k - chosen.sum(axis=1)) % 2 == 0, 1.0, -1.0)
    return chosen @ incidence > 0, signs


def _moebius(values: np.ndarray, bits: int) -> np.ndarray:
    """Moebius transform of a function on {0,1}^bits (index bit i = group i), in place on a copy."""
    f = values.astype(np.float64).copy()
    for i in range(bits):
        view = f.reshape(-1, 2, 1 << i)
        view[:, 1, :] -= view[:, 0, :]
    return f


class _Reach:
    """Which unions of a node's blocks can hold terms of *other* open nodes (one round's open nodes).

    A term of node Y lies in a coalition S only if S meets every block of Y. For the unions
    S_I = union_{j in I} B'_j of a block list B' derived from node x (block i replaced by a
    part of it), ``needed`` returns the subset codes I whose residual value may be non-zero:
    the full union, and each proper I that every block of some other node Y meets.
    """

    def __init__(self, nodes: list[_Node], n_players: int) -> None:
        blocks = [b for x in nodes for b in x.blocks]
        self.incidence = np.zeros((len(blocks), n_players), dtype=np.float32)
        for r, block in enumerate(blocks):
            self.incidence[r, block] = 1.0
        self.offsets = np.cumsum([0] + [len(x.blocks) for x in nodes])
        self.overlap = self.incidence @ self.incidence.T > 0

    def needed(self, x: int, i: int, part: np.ndarray) -> np.ndarray:
        """Subset codes (bit j = block j) to score for node x with block i replaced by ``part``."""
        k = int(self.offsets[x + 1] - self.offsets[x])
        meets = self.overlap[self.offsets[x] : self.offsets[x + 1]].copy()
        meets[i] = self.incidence[:, part].sum(axis=1) > 0
        bits = (meets.astype(np.int64) * (np.int64(1) << np.arange(k, dtype=np.int64))[:, None]).sum(axis=0)
        reachable = np.minimum.reduceat(bits, self.offsets[:-1]) > 0
        reachable[x] = False
        codes = np.arange((1 << k) - 1, dtype=np.int64)
        hit = np.zeros(len(codes), dtype=bool)
        for y in np.flatnonzero(reachable):
            inside = np.ones(len(codes), dtype=bool)
            for b in bits[self.offsets[y] : self.offsets[y + 1]]:
                inside &= (codes & b) != 0
            hit |= inside
        return np.append(codes[hit], (1 << k) - 1)


def _halvings(node: _Node) -> int:
    return sum(int(np.ceil(np.log2(len(b)))) for b in node.blocks)


def _predicted_costs(nodes: list[_Node], reach: _Reach) -> np.ndarray:
    """Coalitions each node still needs to be refined to terms (see the module docstring)."""
    costs = np.empty(len(nodes))
    for x, node in enumerate(nodes):
        shared = len(reach.needed(x, 0, node.blocks[0])) - 1
        costs[x] = _TESTS_PER_HALVING * (_halvings(node) + _SHARED_DECAY * shared)
    return costs


class _Sparse:
    """The sparse phase over one store: probe, refinement rounds, verification."""

    def __init__(self, store: CoalitionStore, n_players: int, rng: np.random.Generator, reserve: int) -> None:
        self.store = store
        self.n = n_players
        self.rng = rng
        self.reserve = reserve  # budget the fallback must keep
        self.ids: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.tol = 0.0
        self.empty = 0.0  # v(empty), the empty set's Moebius coefficient
        self.found: list[tuple[tuple[int, ...], float]] = []  # terms of nodes refined to single players
        self.parked: list[_Node] = []  # nodes left unrefined for want of budget

    def terms(self) -> list[tuple[tuple[int, ...], float]]:
        """The non-empty terms found so far (players, coefficient), sorted by players."""
        return sorted(self.found)

    def _collect(self, nodes: list[_Node]) -> list[_Node]:
        """Record the nodes that are single terms; return the others."""
        self.found += [(tuple(sorted(int(p) for b in x.blocks for p in b)), x.value) for x in nodes if x.is_term]
        return [x for x in nodes if not x.is_term]

    def _score(self, masks: np.ndarray) -> np.ndarray:
        """Register and evaluate masks (at most the budget less the reserve); returns their values."""
        if self.store.count_new(masks) > self.store.remaining - self.reserve:
            raise _FallBack("budget")
        try:
            ids = self.store.register(masks)
        except BudgetExhausted as exc:
            raise _FallBack("budget") from exc
        self.ids.append(ids)
        self.masks.append(masks)
        return ids

    def probe(self, bits: int) -> list[_Node]:
        """Score all unions of b random groups; the non-zero nodes of their Moebius transform."""
        groups = tuple(np.sort(g) for g in np.array_split(self.rng.permutation(self.n), bits))
        masks, _ = _union_rows(groups, np.arange(1 << bits), self.n)
        values = self.store.values(self._score(masks))
        single = np.array_equal(values, values.astype(np.float32))
        eps = float(np.finfo(np.float32 if single else np.float64).eps) / 2
        self.tol = max(_ZERO_TOL, _ROUNDING * (1 << bits) * eps) * float(np.abs(values).max())
        self.empty = float(values[0])
        f = _moebius(values, bits)
        return [_Node(tuple(groups[i] for i in range(bits) if code >> i & 1), float(f[code]))
                for code in np.flatnonzero(np.abs(f) > self.tol) if code != 0]

    def _node_values(self, reach: _Reach, nodes: list[_Node], requests: list[tuple[int, int, np.ndarray]]
                     ) -> np.ndarray:
        """F of node x with block i replaced by a part, for each request (x, i, part), in one batch.

        F = sum_I (-1)^(k-|I|) r(S_I) over the residual r = v - (terms known), where r(S_I) is
        scored only where ``reach`` says a term may remain: elsewhere it is zero.
        """
        masks, signs, sizes = [], [], []
        for x, i, part in requests:
            blocks = nodes[x].blocks[:i] + (part,) + nodes[x].blocks[i + 1 :]
            rows, sign = _union_rows(blocks, reach.needed(x, i, part), self.n)
            masks.append(rows)
            signs.append(sign)
            sizes.append(len(rows))
        rows = np.concatenate(masks)
        residual = self.store.values(self._score(rows)) - predict([((), self.empty)] + self.found, rows)
        terms = np.concatenate(signs) * residual
        return np.add.reduceat(terms, np.cumsum([0] + sizes[:-1]))

    def refine(self, nodes: list[_Node]) -> None:
        """Halve blocks round by round until every node is a single term (collected in ``found``).

        Before each round the cost of finishing is predicted. The first prediction (after the
        probe) must fit in the budget left, or the game is taken as dense.
        When a later one does not fit in the budget left, the costliest nodes are parked (left
        to the dense estimator, which sees them in the residual game) until the rest fit in
        half of it.
        """
        open_nodes = self._collect(nodes)
        first = True
        while open_nodes:
            reach = _Reach(open_nodes + self.parked, self.n)
            costs = _predicted_costs(open_nodes, reach)
            available = self.store.remaining - self.reserve
            if first and costs.sum() > available:
                raise _FallBack("dense probe")
            first = False
            if costs.sum() > available:
                order = np.argsort(costs, kind="stable")
                keep = np.zeros(len(open_nodes), dtype=bool)
                keep[order[np.cumsum(costs[order]) <= available / 2]] = True
                self.parked += [x for x, kept in zip(open_nodes, keep) if not kept]
                open_nodes = [x for x, kept in zip(open_nodes, keep) if kept]
                if not open_nodes:
                    return
                reach = _Reach(open_nodes + self.parked, self.n)
            split = [int(np.argmax([len(b) for b in x.blocks])) for x in open_nodes]
            halves = [(x.blocks[i][: len(x.blocks[i]) // 2], x.blocks[i][len(x.blocks[i]) // 2 :])
                      for x, i in zip(open_nodes, split)]
            f_left = self._node_values(reach, open_nodes, [(x, split[x], halves[x][0]) for x in range(len(split))])
            need_right = [x for x, node in enumerate(open_nodes) if abs(node.value - f_left[x]) > self.tol]
            f_right = dict(zip(need_right, self._node_values(
                reach, open_nodes, [(x, split[x], halves[x][1]) for x in need_right]))) if need_right else {}
            children: list[_Node] = []
            for x, node in enumerate(open_nodes):
                i, (left, right) = split[x], halves[x]
                head, tail = node.blocks[:i], node.blocks[i + 1 :]
                if x not in f_right:
                    children.append(_Node(head + (left,) + tail, node.value))
                    continue
                for blocks, value in ((head + (left,) + tail, f_left[x]), (head + (right,) + tail, f_right[x]),
                                      (head + (left, right) + tail, node.value - f_left[x] - f_right[x])):
                    if abs(value) > self.tol:
                        if len(blocks) > _MAX_BLOCKS:
                            raise _FallBack("too many blocks")
                        children.append(_Node(blocks, float(value)))
            open_nodes = self._collect(children)

    def verify(self, terms: list[tuple[tuple[int, ...], float]], holdout: int) -> float:
        """Largest |v - v_hat| over every coalition scored and ``holdout`` random dense ones."""
        count = int(min(holdout, max(0.0, self.store.remaining - self.reserve)))
        if count > 0:
            density = self.rng.uniform(0.5, 0.95, size=(count, 1))
            self._score(self.rng.random((count, self.n)) < density)
        masks = np.concatenate(self.masks)
        values = self.store.values(np.concatenate(self.ids))
        return float(np.abs(values - predict(terms, masks)).max())


def predict(terms: list[tuple[tuple[int, ...], float]], masks: np.ndarray) -> np.ndarray:
    """v_hat(S) = sum_T a_T [T subset of S] of a recovered game, for bool rows ``masks``."""
    if not terms:
        return np.zeros(len(masks))
    incidence = np.zeros((len(terms), masks.shape[1]), dtype=np.float32)
    for t, (players, _) in enumerate(terms):
        incidence[t, list(players)] = 1.0
    sizes = incidence.sum(axis=1)
    inside = masks.astype(np.float32) @ incidence.T == sizes
    return inside.astype(np.float64) @ np.array([c for _, c in terms])


def interactions(terms: list[tuple[tuple[int, ...], float]], m: int, n: int, index: str) -> np.ndarray:
    """Cross-modal SII or BII of a game given by its Moebius terms (closed form, as for any MobiusGame)."""
    return MobiusGame(m, n, tuple(terms)).interactions(index)


def shapley_values(terms: list[tuple[tuple[int, ...], float]], m: int, n: int) -> np.ndarray:
    """First-order Shapley values sum_{T containing k} a_T / |T| of a game given by its Moebius terms."""
    return MobiusGame(m, n, tuple(t for t in terms if t[0])).shapley()


class _Residual:
    """v minus the terms found so far, with the coalitions the sparse phase scored answered from memory."""

    def __init__(self, value_fn: ValueFunction, masks: np.ndarray, values: np.ndarray,
                 terms: list[tuple[tuple[int, ...], float]]) -> None:
        self._value_fn = value_fn
        self._known = dict(zip((r.tobytes() for r in np.packbits(masks, axis=1)), values.tolist()))
        self._terms = terms
        self.fresh = 0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        keys = [r.tobytes() for r in np.packbits(masks, axis=1)]
        out = np.empty(len(masks))
        fresh = [i for i, key in enumerate(keys) if key not in self._known]
        if fresh:
            out[fresh] = check_values(self._value_fn(masks[fresh]), len(fresh))
            self.fresh += len(fresh)
        for i, key in enumerate(keys):
            if key in self._known:
                out[i] = self._known[key]
        return out - predict(self._terms, masks)


def _probe_bits(n_players: int, budget: float) -> int:
    """Groups of the probe: 2^b within ``_PROBE_SHARE`` of the budget (at least 2^4), of two players
    or more unless every coalition fits (b = N: the probe is then the whole Moebius transform)."""
    bits = max(_MIN_PROBE_BITS, floor(np.log2(max(_PROBE_SHARE * budget, 1.0))))
    if bits >= n_players:
        return n_players
    return int(max(1, min(bits, _MAX_PROBE_BITS, n_players // 2)))


def sparse_recover(
    value_fn: ValueFunction,
    m: int,
    n: int,
    budget: int,
    seed: int,
    index: str = "SII",
    max_batch: int = defaults.MAX_BATCH,
    progress: Optional[ProgressCallback] = None,
    costs: Optional[CostModel] = None,
    dense: DenseEstimator = pilot_estimate,
    dense_min_budget: Callable[[int, int], int] = dense_min_budget_default,
) -> tuple[InteractionEstimate, SparseReport]:
    """Recover the game's Moebius terms if it is sparse, else fall back to ``dense``; with a report."""
    n_players = m + n
    store = CoalitionStore(value_fn, n_players, budget, max_batch, progress, costs, m)
    anchor_ids = register_anchors(store, m, n)
    phase = _Sparse(store, n_players, np.random.default_rng(seed), dense_min_budget(m, n))
    residual = np.inf
    try:
        bits = _probe_bits(n_players, store.remaining)
        nodes = phase.probe(bits)
        if len(nodes) > _DENSE_SHARE * ((1 << bits) - 1):
            raise _FallBack("dense probe")
        phase.refine(nodes)
        if phase.parked:
            raise _FallBack("budget")
        terms = [((), phase.empty)] + phase.terms()
        residual = phase.verify(terms, _HOLDOUT)
        if not residual <= _CHECK * phase.tol:
            raise _FallBack("verification")
    except _FallBack as why:
        return _fall_back(store, phase, value_fn, m, n, budget, seed, index, max_batch, progress, costs,
                          dense, anchor_ids, SparseReport(str(why), tuple(phase.terms()), store.size, residual))
    bound = max(residual, phase.tol)
    estimate = InteractionEstimate(
        phi=interactions(terms, m, n, index),
        stderr=np.full((m, n), bound),
        evaluations=store.size,
        method="sparse",
        index=index,
        seed=seed,
        budget=budget,
        shapley=shapley_values(terms, m, n),
        **anchor_values(store, anchor_ids),
    )
    return estimate, SparseReport("recovered", tuple(terms), store.size, residual)


def _fall_back(store: CoalitionStore, phase: _Sparse, value_fn: ValueFunction, m: int, n: int, budget: int,
               seed: int, index: str, max_batch: int, progress: Optional[ProgressCallback],
               costs: Optional[CostModel], dense: DenseEstimator, anchor_ids: np.ndarray,
               report: SparseReport) -> tuple[InteractionEstimate, SparseReport]:
    """Phi of the terms found plus ``dense`` on the rest of the game, on the budget left.

    Phi is linear in the game, so Phi(v) = Phi(found terms) + Phi(v - found terms) whatever was
    found; the dense estimator sees the residual game (simpler than v when terms were found)
    and reads the coalitions already scored from memory.
    """
    ids = np.concatenate([anchor_ids] + phase.ids)
    masks = np.concatenate([anchor_masks(m, n)] + phase.masks)
    terms = phase.terms()
    residual = _Residual(value_fn, masks, store.values(ids), terms)
    spent = store.size

    offset = None if progress is None else lambda done, _total: progress(min(spent + done, budget), budget)
    rest = dense(residual, m, n, int(floor(store.remaining)), seed, index, max_batch, offset, costs)
    estimate = replace(
        rest,
        phi=rest.phi + interactions(terms, m, n, index),
        shapley=None if rest.shapley is None else rest.shapley + shapley_values(terms, m, n),
        method="sparse",
        budget=budget,
        evaluations=spent + residual.fresh,
        **anchor_values(store, anchor_ids),
    )
    return estimate, report


def sparse_estimate(
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
    """Cross-modal SII (or BII) by sparse Moebius recovery, falling back to `pilot` on non-sparse games
    (:func:`sparse_recover` takes another dense estimator)."""
    return sparse_recover(value_fn, m, n, budget, seed, index, max_batch, progress, costs)[0]


SPARSE = Estimator(
    name="sparse",
    summary="exact recovery of games with few Moebius terms (group aliasing + block halving), else pilot",
    description=("scores v on all unions of b random player groups and Moebius-transforms them into nodes (sets of "
                 "blocks holding the terms that meet every block), halves blocks round by round - scoring, on the "
                 "residual of the terms found, only the unions another open node can reach - until each node is "
                 "one term, verifies the recovered game on held-out coalitions and computes Φ in closed form; "
                 "when the probe, the predicted cost or verification says the game is not sparse, `pilot` "
                 "estimates the residual game on the budget left"),
    reports="Φ exact when recovered (with a verification bound as standard error), and the players' Shapley values",
    min_budget=min_budget,
    run=sparse_estimate,
)
