"""Typed results the SDK returns: explanations and faithfulness reports, with what they were asked for, and their
JSON, notebook and plot views."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import numpy as np

from multishap import __version__
from multishap.service import defaults
from multishap.service.math.metrics import InstanceMetrics
from multishap.service.rpc.convert import (
    influence_from_proto,
    influence_to_proto,
    matrix_from_proto,
    matrix_to_proto,
    metrics_from_proto,
    metrics_to_proto,
)
from multishap.v1 import common_pb2, explainer_pb2

from .audit_results import ModelAnswer, influence_from_dict, influence_to_dict, stability_from_dict, stability_to_dict
from .progress import BUDGET_UNITS, budget_unit_name
from .provenance import SCHEMA_VERSION, Provenance, check_schema

if TYPE_CHECKING:
    import pandas
    from matplotlib.figure import Figure

    from multishap.service.audit import ModalityInfluence, StabilityResult

    from .images import ImageLike

Metrics = InstanceMetrics  # one shape of metrics for the math layer, the wire and the SDK


@dataclass(frozen=True)
class Target:
    name: str
    addresses: list[str]
    model_id: str = ""
    score_semantics: str = ""
    reachable: bool = True
    max_requests: Optional[int] = None    # the adapter's per-explanation caps (None: no cap)
    max_cost: Optional[float] = None

    @classmethod
    def from_proto(cls, msg: explainer_pb2.TargetInfo) -> "Target":
        caps = msg.caps
        return cls(msg.name, list(msg.addresses), msg.model_id, msg.score_semantics, msg.reachable,
                   caps.max_requests if caps.HasField("max_requests") else None,
                   caps.max_cost if caps.HasField("max_cost") else None)

    def to_proto(self) -> explainer_pb2.TargetInfo:
        msg = explainer_pb2.TargetInfo(name=self.name, addresses=self.addresses, model_id=self.model_id,
                                       score_semantics=self.score_semantics, reachable=self.reachable)
        if self.max_requests is not None:
            msg.caps.max_requests = self.max_requests
        if self.max_cost is not None:
            msg.caps.max_cost = self.max_cost
        return msg


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
    image_encodes: int = 0    # masked images a dual encoder encoded
    text_encodes: int = 0

    @classmethod
    def from_proto(cls, msg: common_pb2.Usage) -> "Usage":
        return cls(msg.requests, msg.cache_hits, msg.prompt_tokens, msg.completion_tokens, msg.cost, msg.retries,
                   msg.bounded, msg.image_encodes, msg.text_encodes)

    def to_proto(self) -> common_pb2.Usage:
        return common_pb2.Usage(**asdict(self))


def _decoded(instance: Optional[common_pb2.Instance]) -> Optional[np.ndarray]:
    """The request's image as an RGB array, or None when there is no request or no image in it."""
    if instance is None or not instance.image:
        return None
    from .images import to_pil

    return np.asarray(to_pil(instance.image))


def _provenance(instance: Optional[common_pb2.Instance], image_name: Optional[str]) -> Provenance:
    if instance is None:
        return Provenance(image_name=image_name, tool_version=__version__)
    return Provenance.from_instance(instance, image_name)


def _matrix(values: Optional[np.ndarray]) -> common_pb2.Matrix:
    return common_pb2.Matrix() if values is None else matrix_to_proto(values)


def _array(values: Any) -> Optional[np.ndarray]:
    return None if values is None else np.asarray(values, dtype=np.float64)


@dataclass(repr=False)
class Explanation:
    """Phi (patches x tokens) with its standard errors, players, metrics, cost and provenance.

    What an audit adds, when asked for: ``answer`` (the model's own answer and whether it is correct),
    ``influence`` (modality influence), ``faithfulness`` (F_syn of this explanation's MultiSHAP scores) and
    ``stability`` (set by :meth:`ExplainerClient.stability`, never sent by the service).
    ``image`` (not saved to JSON) is the photo the heatmaps are drawn over.
    """

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
    cost: float = 0.0                 # what it spent, in cost_unit (encoder passes, requests, coalitions)
    cost_unit: str = ""
    budget_unit: str = "coalitions"   # what ``budget`` counts: "coalitions" or "cost"
    target_stderr: float = 0.0        # as asked (0: none)
    target_stderr_reached: bool = False
    provenance: Provenance = field(default_factory=Provenance)
    role: str = ""                    # "true" or "foil" target, as the request said
    answer: Optional[ModelAnswer] = None
    influence: Optional["ModalityInfluence"] = None
    faithfulness: Optional["FaithfulnessReport"] = None
    stability: Optional["StabilityResult"] = None
    image: Optional[np.ndarray] = field(default=None, compare=False)

    @classmethod
    def from_proto(cls, msg: explainer_pb2.Explanation, *, request: Optional[explainer_pb2.ExplainRequest] = None,
                   image: Optional[np.ndarray] = None, image_name: Optional[str] = None) -> "Explanation":
        """The explanation in ``msg``, answering ``request``; ``image`` defaults to the request's decoded image
        and ``image_name`` is the image's file name when it came from a path."""
        instance = None if request is None else request.instance
        provenance = _provenance(instance, image_name)
        faithfulness = None
        if msg.HasField("faithfulness"):
            faithfulness = replace(FaithfulnessReport.from_proto(msg.faithfulness), explainer="multishap",
                                   grid=(msg.grid.rows, msg.grid.cols), provenance=provenance)
        return cls(
            phi=matrix_from_proto(msg.phi), stderr=matrix_from_proto(msg.stderr), tokens=list(msg.tokens),
            grid=(msg.grid.rows, msg.grid.cols), metrics=metrics_from_proto(msg.metrics),
            shapley=np.asarray(msg.shapley) if len(msg.shapley) else None,
            v_full=msg.v_full, v_empty=msg.v_empty, v_image_only=msg.v_image_only, v_text_only=msg.v_text_only,
            modality_interaction=msg.modality_interaction, evaluations=msg.evaluations, seconds=msg.seconds,
            seed=msg.seed, method=msg.method, index=msg.index, budget=msg.budget,
            target=Target.from_proto(msg.target), usage=Usage.from_proto(msg.usage), dry_run=msg.dry_run,
            cost=msg.cost, cost_unit=msg.cost_unit,
            budget_unit=budget_unit_name(msg.budget_unit),
            target_stderr=msg.target_stderr, target_stderr_reached=msg.target_stderr_reached,
            provenance=provenance, image=_decoded(instance) if image is None else image, role=msg.role,
            answer=ModelAnswer.from_proto(msg.answer) if msg.HasField("answer") else None,
            influence=influence_from_proto(msg.influence, msg.v_full, msg.v_empty, msg.v_image_only,
                                           msg.v_text_only) if msg.HasField("influence") else None,
            faithfulness=faithfulness,
        )

    def to_proto(self) -> explainer_pb2.Explanation:
        """The Explanation message this was read from (provenance and image aside): what a job store keeps."""
        rows, cols = self.grid
        msg = explainer_pb2.Explanation(
            phi=_matrix(self.phi), stderr=_matrix(self.stderr), tokens=self.tokens,
            grid=common_pb2.Grid(rows=rows, cols=cols), metrics=metrics_to_proto(self.metrics),
            shapley=[] if self.shapley is None else self.shapley.tolist(), v_full=self.v_full, v_empty=self.v_empty,
            v_image_only=self.v_image_only, v_text_only=self.v_text_only,
            modality_interaction=self.modality_interaction, evaluations=self.evaluations, seconds=self.seconds,
            seed=self.seed, method=self.method, index=self.index, budget=self.budget, target=self.target.to_proto(),
            usage=self.usage.to_proto(), dry_run=self.dry_run, cost=self.cost, cost_unit=self.cost_unit,
            budget_unit=BUDGET_UNITS[self.budget_unit], target_stderr=self.target_stderr,
            target_stderr_reached=self.target_stderr_reached, role=self.role)
        if self.answer is not None:
            msg.answer.CopyFrom(self.answer.to_proto())
        if self.influence is not None:
            msg.influence.CopyFrom(influence_to_proto(self.influence))
        if self.faithfulness is not None:
            msg.faithfulness.CopyFrom(self.faithfulness.to_proto())
        return msg

    def to_dict(self) -> dict[str, Any]:
        """Every field but the image, as JSON types, under the current ``schema_version``."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        audit = ("image", "answer", "influence", "faithfulness", "stability")
        out.update((k, v) for k, v in asdict(self).items() if k not in audit)
        out["answer"] = None if self.answer is None else self.answer.to_dict()
        out["influence"] = influence_to_dict(self.influence)
        out["faithfulness"] = None if self.faithfulness is None else self.faithfulness.to_dict()
        out["stability"] = stability_to_dict(self.stability)
        out["phi"], out["stderr"] = self.phi.tolist(), self.stderr.tolist()
        out["shapley"] = None if self.shapley is None else self.shapley.tolist()
        out["grid"] = list(self.grid)
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        """JSON with every field but the image; ``from_json`` reads it back exactly."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Explanation":
        """Read :meth:`to_dict`'s output, or that of a version before provenance was recorded (it reads as None)."""
        check_schema(data, "explanation")
        data = {k: v for k, v in data.items() if k != "schema_version"}
        data["phi"], data["stderr"] = _array(data["phi"]), _array(data["stderr"])
        data["shapley"] = _array(data.get("shapley"))
        data["grid"] = tuple(data["grid"])
        data["metrics"] = Metrics(**data["metrics"])
        data["target"] = Target(**data["target"])
        data["usage"] = Usage(**data.get("usage", {}))
        data["provenance"] = Provenance.from_dict(data.get("provenance", {}))
        data["answer"] = None if data.get("answer") is None else ModelAnswer.from_dict(data["answer"])
        data["influence"] = influence_from_dict(data.get("influence"))
        data["faithfulness"] = (None if data.get("faithfulness") is None
                                else FaithfulnessReport.from_dict(data["faithfulness"]))
        data["stability"] = stability_from_dict(data.get("stability"))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "Explanation":
        return cls.from_dict(json.loads(text))

    def plot(self, image: Optional["ImageLike"] = None, max_tokens: int = 12, scale: str = "shared") -> "Figure":
        """Per-token heatmaps of Phi over the image (``image``, else the one it was explained on; without either,
        the heatmaps alone, saying so); ``scale`` is "shared" (one symmetric scale) or "per-token"."""
        from .plot import plot_explanation

        return plot_explanation(self, self.image if image is None else image, max_tokens=max_tokens, scale=scale)

    def to_dataframe(self) -> "pandas.DataFrame":
        """Phi in long format, one row per (patch, token): row, col, patch, token_index, token, phi, stderr."""
        from .frames import explanation_frame

        return explanation_frame(self)

    def to_html(self, title: Optional[str] = None) -> str:
        """The self-contained HTML report of this explanation: photo, per-token overlays with a token picker, the
        strongest pairs, metrics, the audit parts and provenance; nothing in it loads from the network."""
        from .report_page import explanation_page

        return explanation_page(self, title)

    def save_html(self, path: Union[str, Path], title: Optional[str] = None) -> Path:
        """Write :meth:`to_html` to ``path``; returns the path."""
        from .report_page import write_page

        return write_page(self.to_html(title), Path(path))

    def _repr_html_(self) -> str:
        from .html import explanation_html

        return explanation_html(self)

    def __repr__(self) -> str:
        rows, cols = self.grid
        asked = "" if self.provenance.text is None else f"{self.provenance.text!r} → {self.provenance.answer!r}, "
        return (f"<Explanation {asked}target {self.target.name!r}: {rows}x{cols} patches × {len(self.tokens)} tokens, "
                f"{self.method} {self.index}, {self.evaluations} evaluations{' (dry run)' if self.dry_run else ''}, "
                f"synergy ratio {self.metrics.synergy_ratio:.3f}>")


@dataclass(frozen=True)
class Unimodal:
    """One modality's insertion and deletion areas, SRG, and its curves at the report's α (empty in files
    written before the curves were sent)."""

    insertion: float
    deletion: float
    srg: float
    curve_ins: tuple[float, ...] = ()
    curve_del: tuple[float, ...] = ()

    @classmethod
    def from_proto(cls, msg: explainer_pb2.UnimodalResult) -> "Unimodal":
        return cls(msg.insertion, msg.deletion, msg.srg, tuple(msg.curve_ins), tuple(msg.curve_del))

    def to_proto(self) -> explainer_pb2.UnimodalResult:
        """The UnimodalResult message this was read from."""
        return explainer_pb2.UnimodalResult(insertion=self.insertion, deletion=self.deletion, srg=self.srg,
                                            curve_ins=self.curve_ins, curve_del=self.curve_del)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Unimodal":
        return cls(data["insertion"], data["deletion"], data["srg"], tuple(data.get("curve_ins", ())),
                   tuple(data.get("curve_del", ())))


@dataclass(repr=False)
class FaithfulnessReport:
    """F_syn (published, unclipped, raw), its curves, unimodal metrics, the macro game, and what was scored.

    ``explainer`` names the scores evaluated ("multishap", "random", "shapley", or "given": the caller's).
    """

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
    target: Target = Target("", [])
    grid: tuple[int, int] = (0, 0)
    explainer: str = ""
    provenance: Provenance = field(default_factory=Provenance)
    image: Optional[np.ndarray] = field(default=None, compare=False)

    @classmethod
    def from_proto(cls, msg: explainer_pb2.FaithfulnessResult, *,
                   request: Optional[explainer_pb2.FaithfulnessRequest] = None, image: Optional[np.ndarray] = None,
                   image_name: Optional[str] = None) -> "FaithfulnessReport":
        """The result in ``msg``, answering ``request`` (see :meth:`Explanation.from_proto`)."""
        instance = None if request is None else request.instance
        macro = np.asarray(msg.macro_per_step) if len(msg.macro_per_step) else None
        if request is None:
            explainer = ""
        elif request.patch_scores or request.token_scores:
            explainer = "given"
        else:
            explainer = (request.explainer or defaults.FAITHFULNESS_EXPLAINER).lower()
        return cls(
            f_syn=msg.f_syn, f_ins=msg.f_ins, f_del=msg.f_del, f_syn_unclipped=msg.f_syn_unclipped,
            f_syn_raw=msg.f_syn_raw, alphas=np.asarray(msg.alphas), curve_ins=np.asarray(msg.curve_ins),
            curve_del=np.asarray(msg.curve_del),
            visual=Unimodal.from_proto(msg.visual), text=Unimodal.from_proto(msg.text),
            macro_per_step=macro, macro_auc=msg.macro_auc if macro is not None else None,
            evaluations=msg.evaluations, patch_scores=np.asarray(msg.patch_scores),
            token_scores=np.asarray(msg.token_scores), tokens=list(msg.tokens), seconds=msg.seconds,
            usage=Usage.from_proto(msg.usage), target=Target.from_proto(msg.target),
            grid=(0, 0) if instance is None else (instance.grid.rows, instance.grid.cols), explainer=explainer,
            provenance=_provenance(instance, image_name), image=_decoded(instance) if image is None else image,
        )

    def to_proto(self) -> explainer_pb2.FaithfulnessResult:
        """The FaithfulnessResult message this was read from (provenance, grid and image aside)."""
        return explainer_pb2.FaithfulnessResult(
            f_syn=self.f_syn, f_ins=self.f_ins, f_del=self.f_del, f_syn_unclipped=self.f_syn_unclipped,
            f_syn_raw=self.f_syn_raw, alphas=self.alphas.tolist(), curve_ins=self.curve_ins.tolist(),
            curve_del=self.curve_del.tolist(), visual=self.visual.to_proto(), text=self.text.to_proto(),
            macro_per_step=[] if self.macro_per_step is None else self.macro_per_step.tolist(),
            macro_auc=self.macro_auc or 0.0, evaluations=self.evaluations,
            patch_scores=self.patch_scores.tolist(), token_scores=self.token_scores.tolist(), tokens=self.tokens,
            seconds=self.seconds, target=self.target.to_proto(), usage=self.usage.to_proto())

    def to_dict(self) -> dict[str, Any]:
        """Every field but the image, as JSON types, under the current ``schema_version``."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        out.update((k, v) for k, v in asdict(self).items() if k != "image")
        for name in ("alphas", "curve_ins", "curve_del", "patch_scores", "token_scores"):
            out[name] = getattr(self, name).tolist()
        out["macro_per_step"] = None if self.macro_per_step is None else self.macro_per_step.tolist()
        out["grid"] = list(self.grid)
        return out

    def to_json(self, indent: Optional[int] = None) -> str:
        """JSON with every field but the image; ``from_json`` reads it back exactly."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FaithfulnessReport":
        check_schema(data, "faithfulness report")
        data = {k: v for k, v in data.items() if k != "schema_version"}
        for name in ("alphas", "curve_ins", "curve_del", "patch_scores", "token_scores", "macro_per_step"):
            data[name] = _array(data.get(name))
        data["visual"], data["text"] = Unimodal.from_dict(data["visual"]), Unimodal.from_dict(data["text"])
        data["usage"] = Usage(**data.get("usage", {}))
        data["target"] = Target(**data["target"])
        data["grid"] = tuple(data["grid"])
        data["provenance"] = Provenance.from_dict(data.get("provenance", {}))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "FaithfulnessReport":
        return cls.from_dict(json.loads(text))

    def plot(self) -> "Figure":
        """The insertion and deletion interaction curves over α (and the macro-game reference when computed),
        with F_syn and the unimodal metrics."""
        from .plot import plot_faithfulness

        return plot_faithfulness(self)

    def to_dataframe(self) -> "pandas.DataFrame":
        """The curves, one row per α: alpha, insertion, deletion (and macro_game when computed)."""
        from .frames import faithfulness_frame

        return faithfulness_frame(self)

    def _repr_html_(self) -> str:
        from .html import faithfulness_html

        return faithfulness_html(self)

    def __repr__(self) -> str:
        scored = f" of {self.explainer!r}" if self.explainer else ""
        return (f"<FaithfulnessReport{scored} on target {self.target.name!r}: F_syn {self.f_syn:.3f} "
                f"(insertion {self.f_ins:.3f}, deletion {self.f_del:.3f}), {len(self.alphas) - 1} steps, "
                f"{self.evaluations} evaluations>")
