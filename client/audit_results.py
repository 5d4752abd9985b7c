"""What an audited explanation carries beyond Φ: the model's own answer and whether it is correct, modality
influence and stability, with their wire and JSON forms."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Optional

import numpy as np

from multishap.service.audit import ModalityInfluence, PerturbationStability, StabilityResult
from multishap.service.rpc.convert import INFLUENCE_VECTORS
from multishap.v1 import explainer_pb2


@dataclass(frozen=True)
class ModelAnswer:
    """The target's own answer to the unmasked instance and, given a ground truth, whether it is correct.

    ``how`` says how it answered ("argmax over 3 candidates", "greedy, 4 new tokens", "top class"), ``scores``
    are the candidates' scores in order, ``raw`` a generative model's text before extraction, ``error`` why the
    target gave no answer (the explanation still stands).
    """

    answer: str = ""
    raw: str = ""
    how: str = ""
    candidates: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    ground_truth: str = ""
    judged: bool = False
    correct: bool = False
    error: str = ""

    @classmethod
    def from_proto(cls, msg: explainer_pb2.ModelAnswer) -> "ModelAnswer":
        return cls(msg.answer, msg.raw, msg.how, tuple(msg.candidates), tuple(msg.scores), msg.ground_truth,
                   msg.judged, msg.correct, msg.error)

    def to_proto(self) -> explainer_pb2.ModelAnswer:
        return explainer_pb2.ModelAnswer(**asdict(self))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["candidates"], out["scores"] = list(self.candidates), list(self.scores)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelAnswer":
        return cls(**{**data, "candidates": tuple(data.get("candidates", ())),
                      "scores": tuple(float(s) for s in data.get("scores", ()))})


def influence_to_dict(influence: Optional[ModalityInfluence]) -> Optional[dict[str, Any]]:
    if influence is None:
        return None
    out = asdict(influence)
    for name in INFLUENCE_VECTORS:
        out[name] = getattr(influence, name).tolist()
    return out


def influence_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[ModalityInfluence]:
    if data is None:
        return None
    return ModalityInfluence(**{**data, **{name: np.asarray(data[name], dtype=np.float64) for name in INFLUENCE_VECTORS}})


def stability_to_dict(result: Optional[StabilityResult]) -> Optional[dict[str, Any]]:
    return None if result is None else asdict(result)


def stability_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[StabilityResult]:
    if data is None:
        return None
    per = {name: PerturbationStability(**values) for name, values in data["per_perturbation"].items()}
    return StabilityResult(**{**data, "per_perturbation": per})
