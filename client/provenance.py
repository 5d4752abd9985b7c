"""What a result was asked for (text, answer, masking, parameters, which image) and which tool made it, so a saved
result can be redrawn, told apart from others and written to a file of its own."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

from multishap import __version__
from multishap.service.rpc.convert import baseline_name
from multishap.v1 import common_pb2

if TYPE_CHECKING:
    from .explanation import Explanation, FaithfulnessReport

# Of the JSON that to_json writes: 1 had no schema_version, 2 added provenance, 3 the audit parts and role.
SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Masking:
    """How masked players were rendered: the image baseline ("default" = the adapter's, "zero", "mean", "blur"),
    the blur radius in pixels and the text mask (0 and "" = the adapter's defaults)."""

    image_baseline: str = "default"
    blur_radius: float = 0.0
    text_mask: str = ""

    @classmethod
    def from_proto(cls, msg: common_pb2.MaskingOptions) -> "Masking":
        return cls(baseline_name(msg.image_baseline), msg.blur_radius, msg.text_mask)


@dataclass(frozen=True)
class Provenance:
    """The request behind a result; None where it was not recorded (files written before schema version 2).

    ``image_name`` is the file name when the image came from a path; ``image_sha256`` is of the bytes sent.
    """

    text: Optional[str] = None
    answer: Optional[str] = None
    parameters: dict[str, str] = field(default_factory=dict)
    masking: Masking = field(default_factory=Masking)
    image_name: Optional[str] = None
    image_sha256: Optional[str] = None
    tool_version: Optional[str] = None

    @classmethod
    def from_instance(cls, instance: common_pb2.Instance, image_name: Optional[str] = None) -> "Provenance":
        """The provenance of a result for ``instance``, made by this version of multishap."""
        return cls(text=instance.text, answer=instance.target, parameters=dict(sorted(instance.parameters.items())),
                   masking=Masking.from_proto(instance.masking), image_name=image_name,
                   image_sha256=hashlib.sha256(instance.image).hexdigest(), tool_version=__version__)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Provenance":
        return cls(**{**data, "parameters": dict(data.get("parameters") or {}),
                      "masking": Masking(**data.get("masking") or {})})


def check_schema(data: Mapping[str, Any], kind: str) -> None:
    """Refuse a file written by a newer multishap, whose fields this version would misread."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"this {kind} has schema_version {version!r}; multishap {__version__} reads versions up "
                         f"to {SCHEMA_VERSION}: upgrade multishap to read it")


def output_stem(result: Union["Explanation", "FaithfulnessReport"]) -> str:
    """A file stem unique per instance and target: the image file's stem (else "image") and 10 hex digits of a
    hash of the image bytes, text, answer, grid, masking, parameters and target name, e.g. ``cat-3f9a0c12de``.

    Results recorded without provenance (old files) hash what they hold, so they too get a stem of their own.
    """
    p = result.provenance
    name = Path(p.image_name).stem if p.image_name else ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:60] or "image"
    identity = json.dumps([p.image_sha256, p.text, p.answer, list(result.grid), asdict(p.masking), p.parameters,
                           result.target.name], sort_keys=True)
    if p.image_sha256 is None:
        identity += json.dumps(result.to_dict(), sort_keys=True)
    return f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"
