"""The Score contract's wire format: bit-packed coalitions and little-endian float64 scores (no gRPC here)."""

from __future__ import annotations

import numpy as np
from multishap.service.math.validation import ArgumentError


def pack_coalitions(masks: np.ndarray) -> bytes:
    """Bit-pack a (B, N) bool array: each row ceil(N / 8) bytes, numpy packbits order."""
    return np.packbits(np.asarray(masks, dtype=bool), axis=1).tobytes()


def unpack_coalitions(data: bytes, num_players: int, num_coalitions: int) -> np.ndarray:
    """Inverse of :func:`pack_coalitions`; ValueError when the sizes do not match."""
    if num_players < 1:
        raise ArgumentError("num_players must be at least 1")
    if num_coalitions < 1:
        raise ArgumentError("the request carries no coalition: num_coalitions must be at least 1")
    stride = (num_players + 7) // 8
    if len(data) != stride * num_coalitions:
        raise ArgumentError(
            f"coalitions hold {len(data)} bytes but {num_coalitions} coalitions of "
            f"{num_players} players need {stride * num_coalitions} ({stride} bytes each)"
        )
    rows = np.frombuffer(data, dtype=np.uint8).reshape(num_coalitions, stride)
    return np.unpackbits(rows, axis=1, count=num_players).astype(bool)


def pack_values(values: np.ndarray) -> bytes:
    """Scores as little-endian float64 bytes (ScoreResponse.values)."""
    return np.ascontiguousarray(values, dtype="<f8").tobytes()


def unpack_values(data: bytes, expected: int) -> np.ndarray:
    """Inverse of :func:`pack_values`; ValueError unless it holds ``expected`` scores."""
    if len(data) != 8 * expected:
        raise ArgumentError(f"the response holds {len(data) / 8:g} scores for {expected} coalitions")
    return np.frombuffer(data, dtype="<f8").astype(np.float64)

