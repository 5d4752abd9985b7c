"""Where progress goes: a caller's callable, or a ``tqdm.auto`` bar (a widget in Jupyter, a text bar with ETA in a
terminal) of one call's coalitions or of a dataset run's instances."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from multishap.v1 import explainer_pb2


# What a budget counts, by name: distinct coalitions, or the target's cost unit.
BUDGET_UNITS = {"coalitions": explainer_pb2.BUDGET_UNIT_COALITIONS, "cost": explainer_pb2.BUDGET_UNIT_COST}


def budget_unit_name(value: int) -> str:
    """The name of a BudgetUnit ("coalitions" or "cost")."""
    return next((name for name, unit in BUDGET_UNITS.items() if unit == value), "coalitions")


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress event of a call: coalitions scored so far, the ``budget`` (in ``budget_unit``), seconds
    since it began, the server's estimate of the seconds left (0 when unknown), and what was spent so far in
    the target's ``cost_unit``."""

    evaluations: int
    budget: int
    elapsed_seconds: float
    eta_seconds: float
    cost: float = 0.0
    cost_unit: str = ""
    budget_unit: str = "coalitions"

    @property
    def done(self) -> float:
        """How much of the budget is spent, in the budget's unit."""
        return self.cost if self.budget_unit == "cost" else float(self.evaluations)

    @classmethod
    def from_proto(cls, msg: explainer_pb2.Progress) -> "ProgressUpdate":
        return cls(msg.evaluations, msg.budget, msg.elapsed_seconds, msg.eta_seconds, msg.cost, msg.cost_unit,
                   budget_unit_name(msg.budget_unit))


ProgressArg = Union[bool, None, Callable[[ProgressUpdate], None]]


def new_bar(**options: Any) -> Any:
    """A tqdm bar that suits where Python runs (``tqdm.auto``)."""
    from tqdm.auto import tqdm

    return tqdm(**options)


class CallProgress:
    """One call's progress: handed to the caller's callable, drawn as a bar of the budget's unit (``True``:
    coalitions, or the target's cost unit), or dropped (``False`` or None)."""

    def __init__(self, progress: ProgressArg, label: str) -> None:
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be True, False or a callable taking a ProgressUpdate; got "
                            f"{type(progress).__name__}")
        self._callback = progress if callable(progress) else None
        self._draw, self._label = progress is True, label
        self._bar: Optional[Any] = None

    def __call__(self, update: ProgressUpdate) -> None:
        if self._callback is not None:
            self._callback(update)
        elif self._draw:
            if self._bar is None:
                unit = update.cost_unit if update.budget_unit == "cost" and update.cost_unit else "coalitions"
                self._bar = new_bar(desc=self._label, total=update.budget, unit=f" {unit}")
            self._bar.update(update.done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class DatasetProgress:
    """A bar over a dataset run's instances, counting those resumed from the results file as done, with the
    skipped and failed counts in its postfix; nothing when ``draw`` is False."""

    def __init__(self, draw: bool, total: int, skipped: int, failed: int) -> None:
        self._bar = new_bar(desc="instances", total=total, initial=skipped, unit=" instances") if draw else None
        self._skipped = skipped
        self._postfix(failed)

    def advance(self, failed: int) -> None:
        """One more instance is done; ``failed`` of them have failed so far."""
        if self._bar is not None:
            self._postfix(failed)
            self._bar.update(1)

    def _postfix(self, failed: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix(skipped=self._skipped, failed=failed, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
