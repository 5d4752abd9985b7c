"""What scoring costs, and the product-design extension of the value-function contract.

A value function is ``value_fn(masks) -> values`` everywhere. A target whose image and text
are encoded separately (a dual encoder) can also answer a *product design* - every image
mask with every text mask - at the cost of one encode per distinct mask on each side; such a
value function has a ``product(image_masks, text_masks) -> (A, B)`` method. Its ``costs``
(a :class:`CostModel`) say what one image encode, one text encode and one coalition cost, so
budgets can be counted in the unit that is paid: encoder passes, requests or coalitions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

ProductFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class CostModel:
    """Cost of scoring in one unit: per distinct masked image, per distinct masked text, per coalition."""

    unit: str = "coalitions"
    image_encode: float = 0.0
    text_encode: float = 0.0
    coalition: float = 1.0

    @property
    def factorised(self) -> bool:
        """Whether the cost sits in the encodes (a dual encoder) rather than in coalitions."""
        return self.image_encode > 0 or self.text_encode > 0

    def of(self, coalitions: int, images: int, texts: int) -> float:
        """Cost of that many new coalitions, distinct masked images and distinct masked texts."""
        return coalitions * self.coalition + images * self.image_encode + texts * self.text_encode


COALITIONS = CostModel()


def cost_model(value_fn: object) -> CostModel:
    """The cost model a value function declares (``costs`` attribute), else one unit per coalition."""
    costs = getattr(value_fn, "costs", None)
    return costs if isinstance(costs, CostModel) else COALITIONS


def product_function(value_fn: object) -> Optional[ProductFunction]:
    """The value function's own product scorer, or None when it only scores coalitions."""
    product = getattr(value_fn, "product", None)
    return product if callable(product) else None


def expand_product(value_fn: Callable[[np.ndarray], np.ndarray], image_masks: np.ndarray,
                   text_masks: np.ndarray) -> np.ndarray:
    """The (A, B) product matrix through the plain coalition contract (A * B coalitions)."""
    a, b = len(image_masks), len(text_masks)
    rows = np.concatenate([np.repeat(image_masks, b, axis=0), np.tile(text_masks, (a, 1))], axis=1)
    return np.asarray(value_fn(rows), dtype=np.float64).reshape(a, b)
