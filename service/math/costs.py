"""What scoring costs, and the product-design extension of the value-function contract.

A value function is ``value_fn(masks) -> values`` everywhere. A target whose image and text
are encoded separately (a dual encoder) can also answer a *product design* - every image
mask with every text mask - at the cost of one encode per distinct mask on each side; such a
value function has a ``product(image_masks, text_masks) -> (A, B)`` method. Its ``costs``
(a :class:`CostModel`) say what one image encode, one text encode and one coalition cost, so
budgets can be counted in the unit that is paid: encoder passes, requests or coalitions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
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
    # Most distinct coalitions a budget in this unit may buy, whatever the prices (None: no cap).
    max_coalitions: Optional[int] = None

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


def product_rows(image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
    """The (A * B, m + n) coalitions of a product design, image-major."""
    a, b = len(image_masks), len(text_masks)
    return np.concatenate([np.repeat(image_masks, b, axis=0), np.tile(text_masks, (a, 1))], axis=1)


def expand_product(value_fn: Callable[[np.ndarray], np.ndarray], image_masks: np.ndarray,
                   text_masks: np.ndarray) -> np.ndarray:
    """The (A, B) product matrix through the plain coalition contract (A * B coalitions)."""
    rows = product_rows(image_masks, text_masks)
    return np.asarray(value_fn(rows), dtype=np.float64).reshape(len(image_masks), len(text_masks))


class CostMeter:
    """A value function that counts what its calls cost: distinct coalitions, distinct masked images and
    texts, and their price under ``costs``. It forwards ``product`` when the wrapped function has one.

    The explainer wraps a target's value function in one, so an explanation's progress and result say
    what it spent in the target's unit whatever the budget counted.
    """

    def __init__(self, value_fn: Callable[[np.ndarray], np.ndarray], num_patches: int,
                 costs: Optional[CostModel] = None, max_coalitions: Optional[int] = None) -> None:
        self._value_fn = value_fn
        self._m = num_patches
        self.costs = costs or cost_model(value_fn)
        if max_coalitions is not None:
            self.costs = replace(self.costs, max_coalitions=max_coalitions)
        self._coalitions: set[bytes] = set()
        self._images: set[bytes] = set()
        self._texts: set[bytes] = set()
        if product_function(value_fn) is not None:
            self.product = self._product

    @property
    def spent(self) -> float:
        """Cost of everything scored so far, in ``costs.unit``."""
        return self.costs.of(len(self._coalitions), len(self._images), len(self._texts))

    @property
    def coalitions(self) -> int:
        """Distinct coalitions scored so far (a product design's pairs included)."""
        return len(self._coalitions)

    @staticmethod
    def _keys(masks: np.ndarray) -> set[bytes]:
        return {row.tobytes() for row in np.packbits(np.asarray(masks, dtype=bool), axis=1)}

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        values = self._value_fn(masks)
        self._coalitions |= self._keys(masks)
        self._images |= self._keys(masks[:, : self._m])
        self._texts |= self._keys(masks[:, self._m :])
        return values

    def _product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        values = self._value_fn.product(image_masks, text_masks)  # type: ignore[attr-defined]
        images, texts = np.asarray(image_masks, dtype=bool), np.asarray(text_masks, dtype=bool)
        self._coalitions |= self._keys(product_rows(images, texts))
        self._images |= self._keys(images)
        self._texts |= self._keys(texts)
        return values
