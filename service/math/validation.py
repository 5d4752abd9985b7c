"""Argument checks shared by the library entry points: each failure is an :class:`ArgumentError`
(a ValueError) with a sentence that names the argument and what it must be."""

from __future__ import annotations

import numpy as np


class ArgumentError(ValueError):
    """An argument the caller passed is invalid; the message says which and what it must be."""


def check_int(name: str, value: object, minimum: int, meaning: str = "") -> int:
    """``value`` as an int, or ArgumentError if it is not an integer >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentError(f"{name} must be an integer{meaning}; got {value!r}")
    if value < minimum:
        raise ArgumentError(f"{name} must be at least {minimum}{meaning}; got {value}")
    return int(value)


def check_value_fn(value_fn: object) -> None:
    """ArgumentError unless ``value_fn`` is callable."""
    if not callable(value_fn):
        raise ArgumentError("value_fn must be callable: masks (B, m + n) bool -> values (B,) float")


def check_game_size(m: object, n: object) -> tuple[int, int]:
    """The numbers of patches and tokens, each at least 1."""
    return (
        check_int("m", m, 1, " (the number of image patches)"),
        check_int("n", n, 1, " (the number of text tokens)"),
    )


def check_grid(rows: int, cols: int) -> None:
    """ArgumentError unless the grid has a row and a column."""
    if rows < 1 or cols < 1:
        raise ArgumentError(f"the patch grid must have at least 1 row and 1 column; got {rows}x{cols}")
