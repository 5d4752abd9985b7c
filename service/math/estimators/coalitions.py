"""Deduplicated, budgeted, batched access to a value function.

Every estimator talks to the game only through :class:`CoalitionStore`: it registers the
coalitions it needs, the store assigns each distinct coalition one id, counts it once
against the budget, and evaluates them in registration order in batches of at most
``max_batch`` rows. Estimators read values only after a flush, and the values of a
row-deterministic game do not depend on the batching, so neither does the result.

The budget counts distinct coalitions, or - given a :class:`~multishap.service.math.costs.CostModel`
and the number of patches - cost units: a new coalition costs its own price plus one encode for
each of its halves (masked image, masked text) not seen before, so a dual encoder's budget is
counted in encoder passes.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from multishap.service.math.costs import CostModel
from multishap.service.math.interrupt import checkpoint
from multishap.service import defaults
from multishap.service.math.validation import ArgumentError

ValueFunction = Callable[[np.ndarray], np.ndarray]
ProgressCallback = Callable[[int, int], None]


class BudgetExhausted(Exception):
    """Raised internally when registering coalitions would exceed the budget."""


class CoalitionStore:
    """Assigns ids to distinct coalitions and evaluates them lazily in batches."""

    def __init__(
        self,
        value_fn: ValueFunction,
        n_players: int,
        budget: int,
        max_batch: int = defaults.MAX_BATCH,
        progress: Optional[ProgressCallback] = None,
        costs: Optional[CostModel] = None,
        num_patches: int = 0,
    ) -> None:
        self._value_fn = value_fn
        self.n_players = n_players
        self.budget = budget
        self.max_batch = max_batch
        self._progress = progress
        self._ids: dict[bytes, int] = {}
        self._masks: list[np.ndarray] = []
        self._values = np.empty(0, dtype=np.float64)
        self._evaluated = 0
        self.costs = costs
        self._m = num_patches
        self._halves: tuple[set[bytes], set[bytes]] = (set(), set())
        self.spent = 0.0

    @property
    def size(self) -> int:
        """Number of distinct coalitions registered so far (evaluated or pending)."""
        return len(self._ids)

    @property
    def remaining(self) -> float:
        """How much more the budget allows: distinct coalitions, or cost units with a cost model."""
        return self.budget - (self.spent if self.costs is not None else len(self._ids))

    def _keys(self, masks: np.ndarray) -> list[bytes]:
        packed = np.packbits(masks, axis=1)
        return [row.tobytes() for row in packed]

    def _new_halves(self, masks: np.ndarray) -> tuple[set[bytes], set[bytes]]:
        images = {r.tobytes() for r in np.packbits(masks[:, : self._m], axis=1)} - self._halves[0]
        texts = {r.tobytes() for r in np.packbits(masks[:, self._m :], axis=1)} - self._halves[1]
        return images, texts

    def _cost(self, masks: np.ndarray, new: int) -> tuple[float, tuple[set[bytes], set[bytes]]]:
        """What ``new`` distinct new coalitions (rows ``masks``) cost, and the halves they bring."""
        if self.costs is None:
            return float(new), (set(), set())
        images, texts = self._new_halves(masks)
        return self.costs.of(new, len(images), len(texts)), (images, texts)

    def count_new(self, masks: np.ndarray) -> float:
        """What registering ``masks`` would cost: new distinct coalitions, or cost units with a cost model."""
        keys = self._keys(masks)
        fresh = [i for i, k in enumerate(keys) if k not in self._ids]
        return self._cost(masks[fresh], len({keys[i] for i in fresh}))[0]

    def register(self, masks: np.ndarray) -> np.ndarray:
        """Register coalitions (rows of a bool array) and return their ids.

        Raises :class:`BudgetExhausted`, registering nothing, when the new distinct
        coalitions would not fit in the remaining budget.
        """
        checkpoint()
        masks = np.ascontiguousarray(masks, dtype=bool)
        keys = self._keys(masks)
        new = [k for k in dict.fromkeys(keys) if k not in self._ids]
        rows_by_key = {k: i for i, k in enumerate(keys)}
        new_rows = masks[[rows_by_key[k] for k in new]] if new else masks[:0]
        cost, (images, texts) = self._cost(new_rows, len(new))
        if cost > self.remaining + 1e-9:
            raise BudgetExhausted
        cap = None if self.costs is None else self.costs.max_coalitions
        if cap is not None and len(self._ids) + len(new) > cap:
            raise BudgetExhausted
        self._halves[0].update(images)
        self._halves[1].update(texts)
        self.spent += cost
        for k in new:
            self._ids[k] = len(self._masks)
            self._masks.append(masks[rows_by_key[k]])
        if len(self._masks) - self._evaluated >= self.max_batch:
            self._evaluate(full_batches_only=True)
        return np.fromiter((self._ids[k] for k in keys), dtype=np.int64, count=len(keys))

    def values(self, ids: np.ndarray) -> np.ndarray:
        """Values of registered coalitions, evaluating whatever is still pending."""
        self.flush()
        return self._values[ids]

    def flush(self) -> None:
        """Evaluate all pending coalitions in batches of at most ``max_batch``."""
        self._evaluate(full_batches_only=False)

    def _evaluate(self, full_batches_only: bool) -> None:
        """Evaluate pending coalitions in registration order, ``max_batch`` at a time.

        Registration evaluates each full batch as soon as it is pending, so long runs report
        progress (and can be stopped) while they sample; a flush then sends the remainder.
        Batches are cut in registration order either way, so results never depend on when
        evaluation happened.
        """
        total = len(self._masks)
        if full_batches_only:
            total = self._evaluated + (total - self._evaluated) // self.max_batch * self.max_batch
        if self._evaluated == total:
            return
        if len(self._values) < total:
            # Grow geometrically: copying on every batch would be quadratic in the budget.
            grown = np.empty(max(total, 2 * len(self._values)), dtype=np.float64)
            grown[: self._evaluated] = self._values[: self._evaluated]
            self._values = grown
        while self._evaluated < total:
            checkpoint()
            stop = min(self._evaluated + self.max_batch, total)
            batch = np.stack(self._masks[self._evaluated : stop])
            self._values[self._evaluated : stop] = self._call(batch)
            self._evaluated = stop
            if self._progress is not None:
                self._progress(self._evaluated, self.budget)

    def _call(self, batch: np.ndarray) -> np.ndarray:
        out = self._value_fn(batch)
        return check_values(out, len(batch))


def check_values(out: object, rows: int) -> np.ndarray:
    """Validate a value function's output for ``rows`` coalitions; return float64 (rows,)."""
    try:
        arr = np.asarray(out)
    except Exception as exc:  # noqa: BLE001 - any conversion failure is the caller's bug
        raise ArgumentError(f"value_fn returned something that is not an array ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise ArgumentError(
            f"value_fn must return real numbers; it returned dtype {arr.dtype} "
            f"for a batch of {rows} coalitions"
        )
    if arr.shape != (rows,):
        raise ArgumentError(
            f"value_fn returned shape {arr.shape} for a batch of {rows} coalitions; "
            f"expected ({rows},): one value per coalition"
        )
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ArgumentError(
            f"value_fn returned NaN or infinity for {int(bad.sum())} of {rows} coalitions "
            f"(first at row {first}: {arr[first]}); scores must be finite"
        )
    return arr


class MemoisedValueFunction:
    """A value function that scores each distinct coalition once, however many computations ask for it.

    One request wraps its target's value function in one of these, so an estimator and every
    faithfulness metric after it share their coalitions (the empty and full ones, the curves'
    top sets) instead of paying for them again; ``evaluations`` counts the distinct coalitions
    scored.
    """

    def __init__(self, value_fn: ValueFunction) -> None:
        self._value_fn = value_fn
        self._values: dict[bytes, float] = {}

    @property
    def evaluations(self) -> int:
        return len(self._values)

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        keys = [row.tobytes() for row in np.packbits(masks, axis=1)]
        fresh: dict[bytes, int] = {}
        for row, key in enumerate(keys):
            if key not in self._values and key not in fresh:
                fresh[key] = row
        if fresh:
            values = check_values(self._value_fn(masks[list(fresh.values())]), len(fresh))
            self._values.update(zip(fresh, values.tolist()))
        return np.array([self._values[key] for key in keys], dtype=np.float64)
