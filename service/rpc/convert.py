"""Every conversion between multishap.v1 messages and Python objects, for the servers and the SDK alike.

The servicers build replies with these and the SDK reads them with these, so a field has one
meaning on both sides. No gRPC here: messages in, messages out.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from multishap.service.audit.influence import ModalityInfluence
from multishap.service.math.estimators.result import InteractionEstimate
from multishap.service.math.faithfulness import (
    MacroGameSII,
    SynergisticFaithfulness,
    UnimodalCurves,
    UnimodalFaithfulness,
)
from multishap.service.math.metrics import InstanceMetrics
from multishap.v1 import common_pb2, explainer_pb2, scorer_pb2


# Image baselines by the names the SDK, the CLI and saved results use; unspecified is the adapter's default.
IMAGE_BASELINES = {
    "zero": common_pb2.IMAGE_BASELINE_ZERO,
    "mean": common_pb2.IMAGE_BASELINE_MEAN,
    "blur": common_pb2.IMAGE_BASELINE_BLUR,
}
DEFAULT_BASELINE = "default"


def baseline_to_proto(name: Optional[str]) -> int:
    """The ImageBaseline value of a baseline name (None: the adapter's default); ValueError for another name."""
    if name is None:
        return common_pb2.IMAGE_BASELINE_UNSPECIFIED
    if name not in IMAGE_BASELINES:
        raise ValueError(f"image_baseline must be one of {', '.join(IMAGE_BASELINES)}; got {name!r}")
    return IMAGE_BASELINES[name]


def baseline_name(value: int) -> str:
    """The name of an ImageBaseline value, "default" for unspecified (the adapter chooses)."""
    names = {v: k for k, v in IMAGE_BASELINES.items()}
    return names.get(value, DEFAULT_BASELINE)


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


def explanation_to_proto(estimate: InteractionEstimate, metrics: InstanceMetrics, players: scorer_pb2.Players,
                         target: explainer_pb2.TargetInfo, usage: common_pb2.Usage, seconds: float,
                         budget: int, dry_run: bool, *, budget_unit: int = explainer_pb2.BUDGET_UNIT_COALITIONS,
                         target_stderr: float = 0.0, cost: float = 0.0, cost_unit: str = "") -> explainer_pb2.Explanation:
    """An estimate of Φ and its metrics as the Explanation message, with the players it is over and its cost."""
    return explainer_pb2.Explanation(
        phi=matrix_to_proto(estimate.phi), stderr=matrix_to_proto(estimate.stderr), tokens=players.tokens,
        grid=players.grid, metrics=metrics_to_proto(metrics),
        shapley=[] if estimate.shapley is None else estimate.shapley.tolist(),
        v_full=estimate.v_full, v_empty=estimate.v_empty, v_image_only=estimate.v_image_only,
        v_text_only=estimate.v_text_only, modality_interaction=estimate.modality_interaction,
        evaluations=estimate.evaluations, seconds=seconds, seed=estimate.seed or 0, method=estimate.method,
        index=estimate.index, budget=budget, target=target, usage=usage, dry_run=dry_run,
        cost=cost, cost_unit=cost_unit, budget_unit=budget_unit, target_stderr=target_stderr,
        target_stderr_reached=bool(estimate.target_stderr_reached),
    )


def unimodal_to_proto(curves: UnimodalCurves) -> explainer_pb2.UnimodalResult:
    """One modality's insertion, deletion and SRG, and their curves, as their message."""
    return explainer_pb2.UnimodalResult(insertion=curves.insertion, deletion=curves.deletion, srg=curves.srg,
                                        curve_ins=curves.curve_ins.tolist(), curve_del=curves.curve_del.tolist())


def faithfulness_to_proto(synergy: SynergisticFaithfulness, unimodal: UnimodalFaithfulness,
                          macro: Optional[MacroGameSII], patch_scores: np.ndarray, token_scores: np.ndarray,
                          players: scorer_pb2.Players, target: explainer_pb2.TargetInfo, usage: common_pb2.Usage,
                          evaluations: int, seconds: float) -> explainer_pb2.FaithfulnessResult:
    """F_syn with its curves, the unimodal metrics and the macro game as the FaithfulnessResult message."""
    return explainer_pb2.FaithfulnessResult(
        f_syn=synergy.f_syn, f_ins=synergy.f_ins, f_del=synergy.f_del, f_syn_unclipped=synergy.f_syn_unclipped,
        f_syn_raw=synergy.f_syn_raw, alphas=synergy.alphas.tolist(), curve_ins=synergy.curve_ins.tolist(),
        curve_del=synergy.curve_del.tolist(), visual=unimodal_to_proto(unimodal.visual),
        text=unimodal_to_proto(unimodal.text), macro_per_step=[] if macro is None else macro.per_step.tolist(),
        macro_auc=0.0 if macro is None else macro.auc, evaluations=evaluations,
        patch_scores=patch_scores.tolist(), token_scores=token_scores.tolist(), tokens=players.tokens,
        seconds=seconds, target=target, usage=usage,
    )


INFLUENCE_VECTORS = ("patch_shapley_with_text", "patch_shapley_without_text", "token_shapley_with_image",
                     "token_shapley_without_image")


def influence_to_proto(influence: ModalityInfluence) -> explainer_pb2.ModalityInfluence:
    """Modality influence as its message (the anchor values travel in the Explanation itself)."""
    return explainer_pb2.ModalityInfluence(
        **{name: np.asarray(getattr(influence, name), dtype=np.float64).tolist() for name in INFLUENCE_VECTORS},
        image_on_text=influence.image_on_text, text_on_image=influence.text_on_image,
        redundancy_flag=influence.redundancy_flag, evaluations=influence.evaluations, exact=influence.exact)


def influence_from_proto(msg: explainer_pb2.ModalityInfluence, v_full: float, v_empty: float, v_image_only: float,
                         v_text_only: float) -> ModalityInfluence:
    """The influence in ``msg``; the four anchor values are its Explanation's (the same game)."""
    return ModalityInfluence(*(np.asarray(getattr(msg, name), dtype=np.float64) for name in INFLUENCE_VECTORS),
                             image_on_text=msg.image_on_text, text_on_image=msg.text_on_image,
                             redundancy_flag=msg.redundancy_flag, v_full=v_full, v_empty=v_empty,
                             v_image_only=v_image_only, v_text_only=v_text_only, exact=msg.exact,
                             evaluations=msg.evaluations)
