"""Deterministic synthetic games with known ground truth.

A game is a batched value function over coalitions of ``m`` image patches followed by
``n`` text tokens. Games built from unanimity terms (sums of a_T * [T subset of S]) have
closed-form interaction indices from their Moebius coefficients, at any size:

    SII_ij = sum_{T >= {i,j}} a_T / (|T| - 1)      BII_ij = sum_{T >= {i,j}} a_T / 2^(|T|-2)
    Shapley_k = sum_{T containing k} a_T / |T|

Every value is computed row by row in a fixed order, so a coalition's value never depends
on the batch it arrives in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import factorial
from typing import Callable

import numpy as np
from multishap.service.math.validation import ArgumentError

FAMILIES = (
    "unanimity-low",
    "unanimity-high",
    "redundant",
    "synergistic",
    "mixed",
    "mlp",
    "bilinear",
)


def _check_masks(masks: np.ndarray, n_players: int) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.ndim != 2 or masks.shape[1] != n_players:
        raise ArgumentError(f"masks must have shape (B, {n_players}); got {masks.shape}")
    return masks.astype(bool, copy=False)


@dataclass(frozen=True)
class MobiusGame:
    """A sum of weighted unanimity games: v(S) = sum_T a_T [T subset of S]."""

    m: int
    n: int
    terms: tuple[tuple[tuple[int, ...], float], ...]
    name: str = "mobius"
    _incidence: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        inc = np.zeros((len(self.terms), self.m + self.n))
        for t, (players, _) in enumerate(self.terms):
            inc[t, list(players)] = 1.0
        object.__setattr__(self, "_incidence", inc)

    @property
    def n_players(self) -> int:
        return self.m + self.n

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = _check_masks(masks, self.n_players)
        present = masks.astype(np.float64) @ self._incidence.T
        out = np.zeros(len(masks))
        for t, (players, coef) in enumerate(self.terms):
            out += coef * (present[:, t] == len(players))
        return out

    def interactions(self, index: str = "SII") -> np.ndarray:
        """Closed-form (m, n) cross-modal interaction matrix, SII or BII."""
        phi = np.zeros((self.m, self.n))
        for players, coef in self.terms:
            k = len(players)
            if k < 2:
                continue
            share = coef / (k - 1) if index == "SII" else coef / 2.0 ** (k - 2)
            pats = [p for p in players if p < self.m]
            toks = [p - self.m for p in players if p >= self.m]
            phi[np.ix_(pats, toks)] += share
        return phi

    def shapley(self) -> np.ndarray:
        """Closed-form first-order Shapley values of all m + n players."""
        phi = np.zeros(self.n_players)
        for players, coef in self.terms:
            phi[list(players)] += coef / len(players)
        return phi


def _or_terms(groups: list[tuple[int, ...]], weight: float) -> list[tuple[tuple[int, ...], float]]:
    """Moebius terms of weight * OR over groups of AND(group), by inclusion-exclusion."""
    terms = []
    for subset in range(1, 1 << len(groups)):
        chosen = [g for b, g in enumerate(groups) if subset >> b & 1]
        players = tuple(sorted(set().union(*chosen)))
        sign = 1.0 if len(chosen) % 2 else -1.0
        terms.append((players, sign * weight))
    return terms


def _merge(terms: list[tuple[tuple[int, ...], float]]) -> tuple[tuple[tuple[int, ...], float], ...]:
    merged: dict[tuple[int, ...], float] = {}
    for players, coef in terms:
        merged[players] = merged.get(players, 0.0) + coef
    return tuple((p, c) for p, c in merged.items() if c != 0.0)


def _cross_term(rng: np.random.Generator, m: int, n: int, order: int) -> tuple[int, ...]:
    """Random coalition of the given order with at least one patch and one token."""
    order = min(order, m + n)
    n_tok = int(rng.integers(max(1, order - m), min(order - 1, n) + 1))
    n_pat = order - n_tok
    pats = rng.choice(m, size=n_pat, replace=False)
    toks = m + rng.choice(n, size=n_tok, replace=False)
    return tuple(sorted(int(p) for p in np.concatenate([pats, toks])))


def unanimity_game(
    m: int, n: int, seed: int, n_terms: int = 30, orders: tuple[int, int] = (1, 4), name: str = "unanimity"
) -> MobiusGame:
    """Random sum of unanimity games; terms of order >= 2 span both modalities.

    Coefficients are standard normal, so both synergy and suppression occur.
    """
    rng = np.random.default_rng([seed, m, n, orders[0], orders[1], n_terms])
    terms = []
    for _ in range(n_terms):
        order = int(rng.integers(orders[0], orders[1] + 1))
        if order == 1:
            players: tuple[int, ...] = (int(rng.integers(m + n)),)
        else:
            players = _cross_term(rng, m, n, order)
        terms.append((players, float(rng.normal())))
    return MobiusGame(m, n, _merge(terms), name)


def _evidence_groups(rng: np.random.Generator, m: int, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    pats = tuple(sorted(int(p) for p in rng.choice(m, size=min(2, m), replace=False)))
    toks = tuple(sorted(int(m + t) for t in rng.choice(n, size=min(2, n), replace=False)))
    return pats, toks


def redundant_game(m: int, n: int, seed: int) -> MobiusGame:
    """Either modality alone suffices: v = max(AND(image evidence), AND(text evidence))."""
    rng = np.random.default_rng([seed, m, n, 1])
    pats, toks = _evidence_groups(rng, m, n)
    return MobiusGame(m, n, _merge(_or_terms([pats, toks], 1.0)), "redundant")


def synergistic_game(m: int, n: int, seed: int) -> MobiusGame:
    """Both modalities are needed: v = AND(image evidence and text evidence)."""
    rng = np.random.default_rng([seed, m, n, 2])
    pats, toks = _evidence_groups(rng, m, n)
    return MobiusGame(m, n, ((pats + toks, 1.0),), "synergistic")


def mixed_game(
    m: int,
    n: int,
    seed: int,
    noise_terms: int = 10,
    synergy: tuple[int, int] | None = None,
    redundancy: tuple[int, int] | None = None,
) -> MobiusGame:
    """A redundant (patch, token) pair, a synergistic pair and small random unanimity noise.

    ``synergy`` and ``redundancy`` name the pairs as (patch index, token index); by default
    both are drawn from the seed.
    """
    rng = np.random.default_rng([seed, m, n, 3])
    pats = rng.permutation(m)
    toks = rng.permutation(n)
    red_p, red_t = redundancy if redundancy is not None else (int(pats[0]), int(toks[0]))
    syn_p, syn_t = synergy if synergy is not None else (int(pats[1 % m]), int(toks[1 % n]))
    terms = _or_terms([(red_p,), (m + red_t,)], 1.0) + [((syn_p, m + syn_t), 1.0)]
    noise = unanimity_game(m, n, seed, n_terms=noise_terms, orders=(1, 3))
    terms += [(p, 0.1 * c) for p, c in noise.terms]
    return MobiusGame(m, n, _merge(terms), "mixed")


def _accumulate(masks: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """masks @ weights, summed player by player so each row's result is batch-independent."""
    out = np.zeros((len(masks), weights.shape[1]))
    for k in range(weights.shape[0]):
        out += masks[:, k : k + 1] * weights[k]
    return out


@dataclass(frozen=True)
class SmoothGame:
    """A game computed by a fixed smooth function of the mask; truth by exact enumeration."""

    m: int
    n: int
    name: str
    fn: Callable[[np.ndarray], np.ndarray] = field(repr=False, compare=False)

    @property
    def n_players(self) -> int:
        return self.m + self.n

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        return self.fn(_check_masks(masks, self.n_players).astype(np.float64))

    def interactions(self, index: str = "SII") -> None:
        """No closed form: compute truth with exact enumeration."""
        return None

    def shapley(self) -> None:
        return None


def mlp_game(m: int, n: int, seed: int, hidden: int = 16) -> SmoothGame:
    """A small fixed random MLP of the mask with a sigmoid output (all interaction orders)."""
    rng = np.random.default_rng([seed, m, n, 4])
    w1 = rng.normal(size=(m + n, hidden)) * 3.0 / np.sqrt(m + n)
    b1 = rng.normal(size=hidden) * 0.5
    w2 = rng.normal(size=hidden) / np.sqrt(hidden) * 2

    def fn(x: np.ndarray) -> np.ndarray:
        h = np.tanh(_accumulate(x, w1) + b1)
        z = np.zeros(len(x))
        for k in range(hidden):
            z += h[:, k] * w2[k]
        return 1.0 / (1.0 + np.exp(-z))

    return SmoothGame(m, n, "mlp", fn)


def bilinear_game(m: int, n: int, seed: int, dim: int = 8) -> SmoothGame:
    """Dual-encoder-like: softplus(<sum of present patch embeddings, sum of token embeddings>)."""
    rng = np.random.default_rng([seed, m, n, 5])
    u = rng.normal(size=(m, dim)) / np.sqrt(m)
    w = rng.normal(size=(n, dim)) / np.sqrt(n)

    def fn(x: np.ndarray) -> np.ndarray:
        img = _accumulate(x[:, :m], u)
        txt = _accumulate(x[:, m:], w)
        z = np.zeros(len(x))
        for k in range(dim):
            z += img[:, k] * txt[:, k]
        return np.logaddexp(0.0, 3.0 * z)

    return SmoothGame(m, n, "bilinear", fn)


def make_game(family: str, m: int, n: int, seed: int = 0) -> MobiusGame | SmoothGame:
    """Build a game of a named family; the same arguments always give the same game."""
    if m < 1 or n < 1:
        raise ArgumentError(f"a game needs at least one patch and one token; got m={m}, n={n}")
    builders: dict[str, Callable[[], MobiusGame | SmoothGame]] = {
        "unanimity-low": lambda: unanimity_game(m, n, seed, n_terms=max(30, (m + n) + 20), orders=(1, 4), name=family),
        "unanimity-high": lambda: unanimity_game(m, n, seed, n_terms=max(30, (m + n) + 20), orders=(4, 8), name=family),
        "redundant": lambda: redundant_game(m, n, seed),
        "synergistic": lambda: synergistic_game(m, n, seed),
        "mixed": lambda: mixed_game(m, n, seed),
        "mlp": lambda: mlp_game(m, n, seed),
        "bilinear": lambda: bilinear_game(m, n, seed),
    }
    if family not in builders:
        raise ArgumentError(f"unknown game family {family!r}; choose one of {', '.join(FAMILIES)}")
    return builders[family]()


@dataclass(frozen=True)
class TabulatedGame:
    """A dual encoder's game from its embedding tables: v(S) = <image_emb[S ∩ patches], text_emb[S ∩ tokens]>.

    Masks index the tables by their bits (player k present adds 2^k), so rows are looked up,
    never encoded. ``product(images, texts)`` is the (A, B) matrix of a product design.
    """

    name: str
    m: int
    n: int
    image_emb: np.ndarray  # (2^m, d)
    text_emb: np.ndarray   # (2^n, d)

    def _index(self, masks: np.ndarray) -> np.ndarray:
        return np.asarray(masks, dtype=np.int64) @ (1 << np.arange(masks.shape[1], dtype=np.int64))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        a = self.image_emb[self._index(masks[:, : self.m])]
        b = self.text_emb[self._index(masks[:, self.m :])]
        return np.einsum("bd,bd->b", a, b)

    def product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        """v for every (image mask, text mask) pair: rows are image masks."""
        return self.image_emb[self._index(image_masks)] @ self.text_emb[self._index(text_masks)].T

    def table(self) -> np.ndarray:
        """v over every coalition: (2^m, 2^n), row = image bits, column = text bits."""
        return self.image_emb @ self.text_emb.T

    def interactions(self, index: str = "SII") -> np.ndarray:
        """Exact cross-modal Φ from the full table (every coalition weighted by its size)."""
        return exact_from_table(self.table(), self.m, self.n, index)


def exact_from_table(table: np.ndarray, m: int, n: int, index: str = "SII") -> np.ndarray:
    """Φ_ij = Σ_{A ⊆ P∖i, B ⊆ T∖j} w(|A| + |B|) Δ_ij(A, B) over a (2^m, 2^n) value table."""
    big_n = m + n
    if index == "SII":
        w = np.array([factorial(s) * factorial(big_n - s - 2) / factorial(big_n - 1) for s in range(big_n - 1)])
    else:
        w = np.full(big_n - 1, 2.0 ** -(big_n - 2))
    size_a = np.array([bin(k).count("1") for k in range(1 << m)])
    size_b = np.array([bin(k).count("1") for k in range(1 << n)])
    phi = np.zeros((m, n))
    for i in range(m):
        without_i = np.flatnonzero(((np.arange(1 << m) >> i) & 1) == 0)
        d_a = table[without_i | (1 << i)] - table[without_i]       # (2^(m-1), 2^n)
        for j in range(n):
            without_j = np.flatnonzero(((np.arange(1 << n) >> j) & 1) == 0)
            delta = d_a[:, without_j | (1 << j)] - d_a[:, without_j]
            weights = w[size_a[without_i][:, None] + size_b[without_j][None, :]]
            phi[i, j] = float((weights * delta).sum())
    return phi
