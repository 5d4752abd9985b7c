"""Import shim: ``multishap.service.metrics``, where the README used to document it, now lives in
:mod:`multishap.service.math.metrics`; code written against the old path keeps working."""

from multishap.service.math.metrics import (
    DatasetMetrics,
    InstanceMetrics,
    dataset_metrics,
    instance_metrics,
)

__all__ = ['DatasetMetrics', 'InstanceMetrics', 'dataset_metrics', 'instance_metrics']
