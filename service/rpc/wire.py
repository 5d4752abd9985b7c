"""The Score contract's wire format: bit-packed coalitions (and ScoreProduct's image and text masks) and
little-endian float64 scores (no gRPC here)."""

from __future__ import annotations

import numpy as np
from multishap.service.math.validation import ArgumentError


def pack_coalitions(masks: np.ndarray) -> bytes:
    """Bit-pack a (B, N) bool array: each row ceil(N / 8) bytes, numpy packbits order."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=1).tobytes()


def unpack_coalitions(data: bytes, num_players: int, num_coalitions: int) -> np.ndarray:
    """Inverse of :func:`pack_coalitions`; ArgumentError when the sizes do not match."""
    if num_players < 1:
        raise ArgumentError("num_players must be at least 1")
    if num_coalitions < 1:
        raise ArgumentError("the request carries no coalition: num_coalitions must be at least 1")
    return _unpack_rows(data, num_players, num_coalitions, "coalitions", "coalitions", "players")


def unpack_product_masks(data: bytes, width: int, count: int, side: str) -> np.ndarray:
    """The ``side`` ("image" or "text") masks of a ScoreProduct request: ``count`` rows of ``width``
    players, packed like coalitions; ArgumentError, naming the side's fields, when the sizes do not match."""
    players, width_field = ("patches", "num_patches") if side == "image" else ("tokens", "num_tokens")
    if width < 1:
        raise ArgumentError(f"{width_field} must be at least 1")
    if count < 1:
        raise ArgumentError(f"the request carries no {side} mask: num_{side}_masks must be at least 1")
    return _unpack_rows(data, width, count, f"{side}_masks", f"{side} masks", players)


def _unpack_rows(data: bytes, width: int, count: int, field: str, rows_name: str, players: str) -> np.ndarray:
    """``count`` packed rows of ``width`` bits each, as bool; the sentence names the field and its rows."""
    stride = (width + 7) // 8
    if len(data) != stride * count:
        raise ArgumentError(
            f"{field} hold {len(data)} bytes but {count} {rows_name} of "
            f"{width} {players} need {stride * count} ({stride} bytes each)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)
    return np.unpackbits(rows, axis=1, count=width).astype(bool)


def pack_values(values: np.ndarray) -> bytes:
    """Scores as little-endian float64 bytes (ScoreResponse.values)."""
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def unpack_values(data: bytes, expected: int) -> np.ndarray:
    """Inverse of :func:`pack_values`; ValueError unless it holds ``expected`` scores."""
    if len(data) != 8 * expected:
        raise ArgumentError(f"the response holds {len(data) / 8:g} scores for {expected} coalitions")
    return np.frombuffer(data, dtype="<f8").astype(np.float64)

