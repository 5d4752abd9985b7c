"""Typed results the SDK returns: explanations and faithfulness reports."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from multishap.service.rpc.convert import matrix_from_proto
from multishap.v1 import common_pb2, explainer_pb2


@dataclass(frozen=True)
class Metrics:
    """MultiSHAP metrics of one Phi."""

    total: float
    synergy: float
    suppression: float
    synergy_ratio: float


@dataclass(frozen=True)
class Target:
    name: str
    addresses: list[str]
    model_id: str = ""
    score_semantics: str = ""
    reachable: bool = True


@dataclass(frozen=True)
class Usage:
    """What scoring cost at a paid endpoint (all 0 for local models); estimates in a dry run."""

    requests: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    retries: int = 0
    bounded: int = 0

    @classmethod
    def from_proto(cls, msg: common_pb2.Usage) -> "Usage":
        return cls(msg.requests, msg.cache_hits, msg.prompt_tokens, msg.completion_tokens, msg.cost, msg.retries,
                   msg.bounded)


@dataclass
class Explanation:
    """Phi (patches x tokens) with its standard errors, players, metrics and provenance."""

    phi: np.ndarray
    stderr: np.ndarray
    tokens: list[str]
    grid: tuple[int, int]
    metrics: Metrics
    shapley: Optional[np.ndarray]
    v_full: float
    v_empty: float
    v_image_only: float
    v_text_only: float
    modality_interaction: float
    evaluations: int
    seconds: float
    seed: int
    method: str
    index: str
    budget: int
    target: Target
    usage: Usage = Usage()
    dry_run: bool = False
    image: Optional[np.ndarray] = field(default=None, repr=False, compare=False)

    @classmethod
    def from_proto(cls, msg: explainer_pb2.Explanation, image: Optional[np.ndarray] = None) -> "Explanation":
        return cls(
            phi=matrix_from_proto(msg.phi), stderr=matrix_from_proto(msg.stderr), tokens=list(msg.tokens),
            grid=(msg.grid.rows, msg.grid.cols),
            metrics=Metrics(msg.metrics.total, msg.metrics.synergy, msg.metrics.suppression, msg.metrics.synergy_ratio),
            shapley=np.asarray(msg.shapley) if len(msg.shapley) else None,
            v_full=msg.v_full, v_empty=msg.v_empty, v_image_only=msg.v_image_only, v_text_only=msg.v_text_only,
            modality_interaction=msg.modality_interaction, evaluations=msg.evaluations, seconds=msg.seconds,
            seed=msg.seed, method=msg.method, index=msg.index, budget=msg.budget,
            target=Target(msg.target.name, list(msg.target.addresses), msg.target.model_id,
                          msg.target.score_semantics, msg.target.reachable),
            usage=Usage.from_proto(msg.usage), dry_run=msg.dry_run, image=image,
        )

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "image"}
        out["phi"], out["stderr"] = self.phi.tolist(), self.stderr.tolist()
        out["shapley"] = None if self.shapley is None else self.shapley.tolist()
        out["grid"] = list(self.grid)
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        """JSON with every field but the image; ``from_json`` reads it back exactly."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Explanation":
        data = dict(data)
        data["phi"] = np.asarray(data["phi"], dtype=np.float64)
        data["stderr"] = np.asarray(data["stderr"], dtype=np.float64)
        data["shapley"] = None if data.get("shapley") is None else np.asarray(data["shapley"], dtype=np.float64)
        data["grid"] = tuple(data["grid"])
        data["metrics"] = Metrics(**data["metrics"])
        data["target"] = Target(**data["target"])
        data["usage"] = Usage(**data.get("usage", {}))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        return cls.from_dict(json.loads(text))

    def plot(self, image=None, max_tokens: int = 12):
        """Matplotlib figure: one patch heatmap per token over the image, one shared
        symmetric colour scale (red = synergy, blue = suppression), and the token average."""
        from .plot import plot_explanation

        return plot_explanation(self, self.image if image is None else image, max_tokens)


@dataclass(frozen=True)
class Unimodal:
    insertion: float
    deletion: float
    srg: float


@dataclass
class FaithfulnessReport:
    """F_syn (published, unclipped, raw), its curves, unimodal metrics and the macro game."""

    f_syn: float
    f_ins: float
    f_del: float
    f_syn_unclipped: float
    f_syn_raw: float
    alphas: np.ndarray
    curve_ins: np.ndarray
    curve_del: np.ndarray
    visual: Unimodal
    text: Unimodal
    macro_per_step: Optional[np.ndarray]
    macro_auc: Optional[float]
    evaluations: int
    patch_scores: np.ndarray
    token_scores: np.ndarray
    tokens: list[str]
    seconds: float
    usage: Usage = Usage()

    @classmethod
    def from_proto(cls, msg: explainer_pb2.FaithfulnessResult) -> "FaithfulnessReport":
        macro = np.asarray(msg.macro_per_step) if len(msg.macro_per_step) else None
        return cls(
            f_syn=msg.f_syn, f_ins=msg.f_ins, f_del=msg.f_del, f_syn_unclipped=msg.f_syn_unclipped,
            f_syn_raw=msg.f_syn_raw, alphas=np.asarray(msg.alphas), curve_ins=np.asarray(msg.curve_ins),
            curve_del=np.asarray(msg.curve_del),
            visual=Unimodal(msg.visual.insertion, msg.visual.deletion, msg.visual.srg),
            text=Unimodal(msg.text.insertion, msg.text.deletion, msg.text.srg),
            macro_per_step=macro, macro_auc=msg.macro_auc if macro is not None else None,
            evaluations=msg.evaluations, patch_scores=np.asarray(msg.patch_scores),
            token_scores=np.asarray(msg.token_scores), tokens=list(msg.tokens), seconds=msg.seconds,
            usage=Usage.from_proto(msg.usage),
        )
