"""Cooperative interruption of long computations, without any RPC machinery.

A caller that can be cancelled (the explainer, on a client's cancel or deadline) runs the
math inside ``interruptible(check)``; the math calls :func:`checkpoint` in its loops, and
``check`` raises to stop it there. Outside such a scope ``checkpoint`` does nothing, so a
library caller sees no difference. The scope is a context variable: it holds for the thread (or
task) that entered it, not for threads the computation starts.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

_check: ContextVar[Optional[Callable[[], None]]] = ContextVar("multishap_interrupt_check", default=None)


@contextmanager
def interruptible(check: Callable[[], None]) -> Iterator[None]:
    """Run the body with ``check`` called at every :func:`checkpoint`; it raises to interrupt."""
    token = _check.set(check)
    try:
        yield
    finally:
        _check.reset(token)


def checkpoint() -> None:
    """Give the enclosing :func:`interruptible` scope the chance to stop the computation."""
    check = _check.get()
    if check is not None:
        check()
