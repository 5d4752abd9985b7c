"""Library-mode audit statistics over the math layer's value-function contract: modality influence,
explanation stability, bootstrap intervals of MSR/SDR and explainer comparison. No gRPC here."""

from multishap.service.audit.bootstrap import BootstrapMetrics, bootstrap_dataset_metrics
from multishap.service.audit.compare import ExplainerComparison, PairwiseTest, compare_explainers
from multishap.service.audit.influence import ModalityInfluence, modality_influence
from multishap.service.audit.splits import ROLES, SplitMetrics, bootstrap_mean, split_metrics
from multishap.service.audit.stability import PerturbationStability, StabilityResult, stability

__all__ = [
    "ROLES",
    "BootstrapMetrics",
    "ExplainerComparison",
    "ModalityInfluence",
    "PairwiseTest",
    "PerturbationStability",
    "SplitMetrics",
    "StabilityResult",
    "bootstrap_dataset_metrics",
    "bootstrap_mean",
    "compare_explainers",
    "modality_influence",
    "split_metrics",
    "stability",
]
