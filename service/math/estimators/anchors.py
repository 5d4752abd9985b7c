"""The four modality-level coalitions every estimator evaluates: empty, full, image, text."""

from __future__ import annotations

import numpy as np

from multishap.service.math.estimators.coalitions import CoalitionStore

ANCHOR_NAMES = ("v_empty", "v_full", "v_image_only", "v_text_only")


def anchor_masks(m: int, n: int) -> np.ndarray:
    """Rows: no player, every player, only the patches, only the tokens."""
    masks = np.zeros((4, m + n), dtype=bool)
    masks[1] = True
    masks[2, :m] = True
    masks[3, m:] = True
    return masks


def register_anchors(store: CoalitionStore, m: int, n: int) -> np.ndarray:
    """Register the anchor coalitions; returns their ids in ANCHOR_NAMES order."""
    return store.register(anchor_masks(m, n))


def anchor_values(store: CoalitionStore, ids: np.ndarray) -> dict[str, float]:
    """v(empty), v(N), v(P), v(T) keyed as the InteractionEstimate fields."""
    return {name: float(v) for name, v in zip(ANCHOR_NAMES, store.values(ids))}
