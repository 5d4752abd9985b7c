"""Explainer configuration: targets (name -> adapter addresses) and limits.

From a TOML file::

    [limits]
    max_budget = 200000                 # refused above this, RESOURCE_EXHAUSTED
    default_budget = 20000
    max_concurrent_explanations = 8
    max_image_pixels = 40000000
    max_message_bytes = 67108864

    [targets.synthetic]
    addresses = ["127.0.0.1:50051", "127.0.0.1:50052"]
    timeout_s = 30        # per Score call
    max_batch = 1024      # coalitions per Score call
    max_in_flight = 4     # Score calls in flight per explanation

and from the environment, which overrides the file: ``MULTISHAP_TARGETS`` as
``name=host:port,host:port;other=host:port`` and ``MULTISHAP_MAX_BUDGET``,
``MULTISHAP_DEFAULT_BUDGET``, ``MULTISHAP_MAX_CONCURRENT_EXPLANATIONS``,
``MULTISHAP_MAX_IMAGE_PIXELS``, ``MULTISHAP_MAX_MESSAGE_BYTES``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Mapping, Optional


@dataclass(frozen=True)
class TargetConfig:
    """One target: the replicas of an adapter and how to call them."""

    name: str
    addresses: tuple[str, ...]
    timeout_s: float = 30.0
    max_batch: int = 1024
    max_in_flight: int = 4


@dataclass(frozen=True)
class Limits:
    """What one server accepts; each limit is refused with RESOURCE_EXHAUSTED."""

    max_budget: int = 200_000
    default_budget: int = 20_000
    max_concurrent_explanations: int = 8
    max_image_pixels: int = 40_000_000
    max_message_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class ExplainerConfig:
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


def _target(name: str, spec: Mapping[str, object]) -> TargetConfig:
    addresses = spec.get("addresses")
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) and a for a in addresses):
        raise ValueError(f"target {name!r} needs a non-empty list of addresses (host:port)")
    known = {f.name for f in fields(TargetConfig)} - {"name", "addresses"}
    unknown = set(spec) - known - {"addresses"}
    if unknown:
        raise ValueError(f"target {name!r} has unknown settings {sorted(unknown)}; known: {sorted(known)}")
    extra = {k: spec[k] for k in known if k in spec}
    return TargetConfig(name=name, addresses=tuple(addresses), **extra)


def parse_targets_env(value: str) -> dict[str, TargetConfig]:
    """``name=host:port,host:port;other=host:port`` as target configs."""
    targets = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        name, sep, addresses = item.partition("=")
        if not sep or not name.strip() or not addresses.strip():
            raise ValueError(f"MULTISHAP_TARGETS entry {item!r} is not name=host:port[,host:port]")
        targets[name.strip()] = TargetConfig(name.strip(), tuple(a.strip() for a in addresses.split(",") if a.strip()))
    return targets


def load_config(path: Optional[str | Path] = None, environ: Mapping[str, str] = os.environ) -> ExplainerConfig:
    """Read the TOML file (if any), then apply environment overrides."""
    data: dict = {}
    if path is not None:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    unknown = set(data) - {"targets", "limits"}
    if unknown:
        raise ValueError(f"unknown sections {sorted(unknown)} in {path}; expected [limits] and [targets.NAME]")
    targets = {name: _target(name, spec) for name, spec in data.get("targets", {}).items()}
    limit_names = {f.name for f in fields(Limits)}
    bad = set(data.get("limits", {})) - limit_names
    if bad:
        raise ValueError(f"unknown limits {sorted(bad)}; known: {sorted(limit_names)}")
    limits = replace(Limits(), **data.get("limits", {}))
    if environ.get("MULTISHAP_TARGETS"):
        targets.update(parse_targets_env(environ["MULTISHAP_TARGETS"]))
    overrides = {}
    for name in limit_names:
        raw = environ.get(f"MULTISHAP_{name.upper()}")
        if raw:
            if not raw.isdigit():
                raise ValueError(f"MULTISHAP_{name.upper()} must be a whole number; got {raw!r}")
            overrides[name] = int(raw)
    return ExplainerConfig(targets=targets, limits=replace(limits, **overrides))
