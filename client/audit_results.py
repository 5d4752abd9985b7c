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
        """The answer in ``msg``."""
        return cls(msg.answer, msg.raw, msg.how, tuple(msg.candidates), tuple(msg.scores), msg.ground_truth,
                   msg.judged, msg.correct, msg.error)

    def to_proto(self) -> explainer_pb2.ModelAnswer:
        """The ModelAnswer message this was read from."""
        return explainer_pb2.ModelAnswer(**asdict(self))

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON types."""
        out = asdict(self)
        out["candidates"], out["scores"] = list(self.candidates), list(self.scores)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelAnswer":
        """Read :meth:`to_dict`'s output."""
        return cls(**{**data, "candidates": tuple(data.get("candidates", ())),
                      "scores": tuple(float(s) for s in data.get("scores", ()))})


def influence_to_dict(influence: Optional[ModalityInfluence]) -> Optional[dict[str, Any]]:
    """Modality influence as JSON types (None stays None)."""
    if influence is None:
        return None
    out = asdict(influence)
    for name in INFLUENCE_VECTORS:
        out[name] = getattr(influence, name).tolist()
    return out


def influence_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[ModalityInfluence]:
    """Read :func:`influence_to_dict`'s output."""
    if data is None:
        return None
    return ModalityInfluence(**{**data, **{name: np.asarray(data[name], dtype=np.float64) for name in INFLUENCE_VECTORS}})


def stability_to_dict(result: Optional[StabilityResult]) -> Optional[dict[str, Any]]:
    """A stability result as JSON types (None stays None)."""
    return None if result is None else asdict(result)


def stability_from_dict(data: Optional[Mapping[str, Any]]) -> Optional[StabilityResult]:
    """Read :func:`stability_to_dict`'s output."""
    if data is None:
        return None
    per = {name: PerturbationStability(**values) for name, values in data["per_perturbation"].items()}
    return StabilityResult(**{**data, "per_perturbation": per})
