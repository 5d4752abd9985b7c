"""How every output names players and pairs: patch "r1c2" (row and column counted from 0, patches row-major,
as the grid's tick labels) and tokens as quoted text, numbered where a token repeats."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np


def patch_label(index: int, cols: int) -> str:
    """The name of patch ``index`` (row-major) on a grid of ``cols`` columns, e.g. ``r1c2``."""
    return f"r{index // cols}c{index % cols}"


def token_labels(tokens: Sequence[str]) -> list[str]:
    """Each token quoted; a token that occurs more than once gets its occurrence number (``'a' #2``)."""
    counts, seen = Counter(tokens), Counter()
    labels = []
    for token in tokens:
        seen[token] += 1
        labels.append(f"{token!r} #{seen[token]}" if counts[token] > 1 else repr(token))
    return labels


@dataclass(frozen=True)
class Pair:
    """One entry of Phi: a patch, a token, its value and standard error, and its name ``patch r1c2 × 'cat'``."""

    patch: int
    token: int
    label: str
    phi: float
    stderr: float


def strongest_pairs(phi: np.ndarray, stderr: np.ndarray, tokens: Sequence[str], cols: int, k: int,
                    synergy: bool) -> list[Pair]:
    """The ``k`` strongest synergy (Φ > 0) or suppression (Φ < 0) pairs, strongest first; fewer when fewer
    entries have that sign, and ties go to the lower patch, then token."""
    signed = phi if synergy else -phi
    order = np.argsort(-signed, axis=None, kind="stable")
    labels = token_labels(tokens)
    pairs = []
    for flat in order[:k]:
        i, j = np.unravel_index(flat, phi.shape)
        if signed[i, j] <= 0:
            break
        pairs.append(Pair(int(i), int(j), f"patch {patch_label(int(i), cols)} × {labels[j]}", float(phi[i, j]),
                          float(stderr[i, j])))
    return pairs
