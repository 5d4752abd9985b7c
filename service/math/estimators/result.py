"""The result every estimator returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class InteractionEstimate:
    """Cross-modal interaction matrix with its uncertainty and the game's anchor values.

    ``phi[i, j]`` is the interaction index (SII or BII) of image patch ``i`` and text token
    ``j``; ``stderr`` is the standard error of each entry (0 for exact results, ``inf``
    where an entry got no information). ``shapley`` holds first-order Shapley values of all
    ``m + n`` players when the estimator yields them, else ``None``. With a precision target,
    ``target_stderr`` is that target and ``target_stderr_reached`` says whether the largest
    standard error fell to it before the budget ran out (both ``None`` without a target).
    """

    phi: np.ndarray
    stderr: np.ndarray
    evaluations: int
    method: str
    index: str
    seed: Optional[int]
    budget: Optional[int]
    v_full: float
    v_empty: float
    v_image_only: float
    v_text_only: float
    shapley: Optional[np.ndarray] = None
    target_stderr: Optional[float] = None
    target_stderr_reached: Optional[bool] = None

    @property
    def modality_interaction(self) -> float:
        """Interaction of image and text as two players: v(N) - v(P) - v(T) + v(empty)."""
        return self.v_full - self.v_image_only - self.v_text_only + self.v_empty
