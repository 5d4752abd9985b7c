"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.metrics`."""

from multishap.service.math.metrics import (
    DatasetMetrics,
    InstanceMetrics,
    dataset_metrics,
    instance_metrics,
)

__all__ = ['DatasetMetrics', 'InstanceMetrics', 'dataset_metrics', 'instance_metrics']
