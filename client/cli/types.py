"""Value types for the command line: each turns one string into a checked value or raises
``argparse.ArgumentTypeError`` with one sentence, so a bad option or variable is one line and exit code 2."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable, Sequence


def grid(text: str) -> tuple[int, int]:
    """A patch grid written ROWSxCOLS, e.g. 7x7, each side at least 1."""
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a grid looks like 7x7 (rows x columns); got {text!r}") from None
    if rows < 1 or cols < 1:
        raise argparse.ArgumentTypeError(f"a grid needs at least one row and one column; got {text!r}")
    return rows, cols


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """Integers from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer; got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}; got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def number(low: float = 0.0, inclusive: bool = True) -> Callable[[str], float]:
    """Finite numbers at least ``low`` (above it when ``inclusive`` is False)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number; got {text!r}") from None
        if not (value >= low if inclusive else value > low) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a finite number {'at least' if inclusive else 'above'} "
                                             f"{low:g}; got {text!r}")
        return value

    parse.__name__ = "number"
    return parse


def one_of(choices: Sequence[str]) -> Callable[[str], str]:
    """One of ``choices``, in any case, returned as ``choices`` spells it."""
    canonical = {c.lower(): c for c in choices}

    def parse(text: str) -> str:
        try:
            return canonical[text.lower()]
        except KeyError:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}; got {text!r}") from None

    parse.__name__ = "choice"
    return parse


def names(choices: Sequence[str]) -> Callable[[str], tuple[str, ...]]:
    """A comma-separated list of names out of ``choices``, e.g. ``429,500``."""
    single = one_of(choices)

    def parse(text: str) -> tuple[str, ...]:
        parts = tuple(single(part.strip()) for part in text.split(",") if part.strip())
        if not parts:
            raise argparse.ArgumentTypeError(f"expected names out of {', '.join(choices)}, separated by commas")
        return parts

    parse.__name__ = "names"
    return parse


def token_ids(text: str) -> frozenset[int]:
    """Comma-separated non-negative token ids, e.g. ``9454,9455``."""
    try:
        ids = frozenset(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas; got {text!r}") from None
    if any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"token ids are non-negative; got {text!r}")
    return ids


def boolean(text: str) -> bool:
    """yes/no, true/false, on/off or 1/0: how an environment variable sets a flag."""
    value = text.strip().lower()
    if value in ("yes", "true", "on", "1"):
        return True
    if value in ("no", "false", "off", "0", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no; got {text!r}")


def path(text: str) -> Path:
    """A file or folder path (not checked for existence: the command says what it could not read)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path; got an empty string")
    return Path(text)


def key_value(text: str) -> tuple[str, str]:
    """``KEY=VALUE``, e.g. ``family=mixed``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE; got {text!r}")
    return key, value


PORT = integer(0, 65535)
METRICS_PORT = integer(-1, 65535)
POSITIVE = integer(1)
NON_NEGATIVE = integer(0)
SECONDS = number(0.0)


def perturbations(text: str) -> tuple[str, ...]:
    """A comma-separated list of stability perturbations (seed, jpeg, noise, shift), each once; "" for none."""
    from multishap.service.audit.stability import PERTURBATIONS

    names = tuple(name.strip().lower() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown perturbation {unknown[0]!r}: choose among {', '.join(PERTURBATIONS)}")
    if len(set(names)) != len(names):
        raise argparse.ArgumentTypeError("each perturbation may be named once")
    return names
