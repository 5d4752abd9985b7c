"""Every conversion between multishap.v1 messages and Python objects, for the servers and the SDK alike.

The servicers build replies with these and the SDK reads them with these, so a field has one
meaning on both sides. No gRPC here: messages in, messages out.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from multishap.service.math.metrics import InstanceMetrics
from multishap.v1 import common_pb2, explainer_pb2


def matrix_to_proto(matrix: np.ndarray) -> common_pb2.Matrix:
    """A 2-D float array as a row-major Matrix message."""
    matrix = np.asarray(matrix, dtype=np.float64)
    return common_pb2.Matrix(rows=matrix.shape[0], cols=matrix.shape[1], values=matrix.ravel().tolist())


def matrix_from_proto(message: common_pb2.Matrix) -> Optional[np.ndarray]:
    """The Matrix message as a (rows, cols) array, or None for an empty message."""
    if message.rows == 0 and message.cols == 0:
        return None
    return np.asarray(message.values, dtype=np.float64).reshape(message.rows, message.cols)


def add_usage(total: common_pb2.Usage, part: common_pb2.Usage) -> None:
    """Add ``part``'s counts and cost to ``total`` (proto merging would overwrite them)."""
    for fd in common_pb2.Usage.DESCRIPTOR.fields:
        setattr(total, fd.name, getattr(total, fd.name) + getattr(part, fd.name))


def metrics_to_proto(metrics: InstanceMetrics) -> explainer_pb2.InstanceMetrics:
    """The MultiSHAP metrics of one Phi as their message."""
    return explainer_pb2.InstanceMetrics(total=metrics.total, synergy=metrics.synergy,
                                         suppression=metrics.suppression, synergy_ratio=metrics.synergy_ratio)


def metrics_from_proto(message: explainer_pb2.InstanceMetrics) -> InstanceMetrics:
    """The metrics message as the math layer's :class:`InstanceMetrics`."""
    return InstanceMetrics(total=message.total, synergy=message.synergy, suppression=message.suppression,
                           synergy_ratio=message.synergy_ratio)
