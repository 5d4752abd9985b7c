"""Explainer configuration: targets (name -> adapter addresses), limits and server settings.

From a TOML file (``deploy/explainer.toml`` documents every key and its default)::

    [server]
    expose_addresses = false            # adapter addresses stay server-side
    grace_s = 30                        # SIGTERM: in-flight work gets this long to finish

    [limits]
    max_budget = 200000                 # refused above this, RESOURCE_EXHAUSTED
    max_coalitions = 4000000            # scored by one explanation, whatever its budget's unit
    max_concurrent_explanations = 8
    max_queued_explanations = 16        # wait for a slot, at most max_queue_wait_s
    ...

    [targets.synthetic]
    addresses = ["127.0.0.1:50051", "127.0.0.1:50052"]
    timeout_s = 30        # per Score call
    max_batch = 1024      # coalitions per Score call
    max_in_flight = 4     # Score calls in flight per explanation
    tls_ca = "ca.pem"     # TLS to the replicas, checked against this CA (tls_cert and tls_key: mutual TLS;
                          # tls_server_name: the name their certificate carries, when not the address's host)

and from the environment, which overrides the file: ``MULTISHAP_TARGETS`` as
``name=host:port,host:port;other=host:port`` and ``MULTISHAP_<LIMIT>`` for every limit
(``MULTISHAP_MAX_BUDGET``, ``MULTISHAP_MAX_QUEUE_WAIT_S``, ...). Every value is checked
against its type and range when the configuration is loaded, so a bad value stops the
server at start-up with the file, the key and what was expected.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional
from multishap.service import defaults
from multishap.service.rpc.tls import ClientTLS, check_client_tls


@dataclass(frozen=True)
class TargetConfig:
    """One target: the replicas of an adapter and how to call them."""

    name: str
    addresses: tuple[str, ...]
    timeout_s: float = 30.0
    max_batch: int = 1024
    max_in_flight: int = 4
    tls: Optional[ClientTLS] = None     # [targets.NAME] tls_ca (on when set), tls_cert, tls_key, tls_server_name


@dataclass(frozen=True)
class Limits:
    """What one server accepts; a request over a limit is refused with RESOURCE_EXHAUSTED
    before any scoring, naming the limit and its value."""

    max_budget: int = 200_000
    default_budget: int = defaults.BUDGET            # what budget 0 means (at most max_budget)
    # Distinct coalitions one explanation may score whatever its budget's unit: a budget in encoder
    # passes buys many coalitions per pass (a product design), and a target's prices are its own.
    max_coalitions: int = 4_000_000
    max_concurrent_explanations: int = 8
    max_queued_explanations: int = 16       # requests waiting for a slot; beyond: refused with pushback
    max_queue_wait_s: float = 30.0          # longest wait for a slot (never past the caller's deadline)
    max_image_pixels: int = 16_777_216      # 4096 x 4096
    max_message_bytes: int = defaults.MAX_MESSAGE_BYTES
    max_grid_side: int = 32                 # rows and columns of the patch grid, each
    max_patches: int = 256                  # rows x cols
    max_text_chars: int = 4096
    max_tokens: int = 128                   # text players, as the target tokenises
    max_players: int = 320                  # patches + tokens
    max_parameters: int = 16                # instance parameters, each key and value at most 256 characters
    max_scores: int = 4096                  # given patch or token scores of one Faithfulness request
    max_steps: int = 100                    # Faithfulness alpha steps
    max_chunks: int = 10                    # macro-game chunks (2^(2 + chunks) coalitions per step)
    max_dataset_items: int = 10_000         # instances of one dataset job
    max_candidates: int = 64                # answers, captions or classes one correctness check chooses among
    max_pending_job_items: int = 100_000    # job items waiting or running, per identity (all callers without tokens)


@dataclass(frozen=True)
class ServerSettings:
    """How the explainer runs: disclosure, shutdown and target probing."""

    expose_addresses: bool = False          # show adapter addresses to clients (ListTargets, Explanation)
    grace_s: float = 30.0                   # on SIGTERM, in-flight work gets this long before it is cancelled
    drain_delay_s: float = 2.0              # on SIGTERM, NOT_SERVING is reported this long before the port closes
    probe_interval_s: float = 5.0           # how often target reachability (readiness) is checked


@dataclass(frozen=True)
class JobSettings:
    """Where jobs are stored and how this replica runs them (see :mod:`multishap.service.jobstore`)."""

    store: str = ""                         # SQLAlchemy URL; "" keeps jobs in memory (lost on exit)
    workers: int = 2                        # job items this replica explains at once (0: store and serve only)
    lease_s: float = 30.0                   # a replica that stops renewing its items' leases this long loses them
    poll_s: float = 0.5                     # how often idle workers, and WatchJob, look at the store


@dataclass(frozen=True)
class ExplainerConfig:
    targets: dict[str, TargetConfig] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    server: ServerSettings = field(default_factory=ServerSettings)
    jobs: JobSettings = field(default_factory=JobSettings)


# Lower bounds of the numeric settings; every other one must be at least 1.
_MINIMUM = {"max_queued_explanations": 0, "max_queue_wait_s": 0.0, "probe_interval_s": 0.1, "grace_s": 0.0,
            "drain_delay_s": 0.0, "workers": 0, "lease_s": 1.0, "poll_s": 0.05}


def _checked(where: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``, in range; ValueError naming ``where``, the key and the type."""
    kind = type(default)
    if kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: {key} must be a string; got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: {key} must be true or false; got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: {key} must be a whole number; got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {key} must be a number; got {value!r}")
        value = float(value)
    minimum = _MINIMUM.get(key, 1)
    if value < minimum:
        raise ValueError(f"{where}: {key} must be at least {minimum}; got {value!r}")
    return value


def _settings(cls, where: str, section: str, values: Mapping[str, Any], base: Any = None, **fixed: Any):
    """An instance of the dataclass ``cls`` from ``values``, every key known and checked."""
    defaults = base if base is not None else cls(**fixed)
    known = {f.name for f in fields(cls)} - set(fixed)
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{where}: unknown settings {sorted(unknown)} in [{section}]; known: {sorted(known)}")
    checked = {k: _checked(f"{where} [{section}]", k, v, getattr(defaults, k)) for k, v in values.items()}
    return replace(defaults, **checked)


def _target(where: str, name: str, spec: Mapping[str, Any]) -> TargetConfig:
    if not isinstance(spec, Mapping):
        raise ValueError(f"{where}: [targets.{name}] must be a table with addresses = [\"host:port\", ...]")
    addresses = spec.get("addresses")
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) and a for a in addresses):
        raise ValueError(f"{where}: target {name!r} needs a non-empty list of addresses (host:port)")
    rest = {k: v for k, v in spec.items() if k != "addresses" and k not in _TLS_KEYS}
    return _settings(TargetConfig, where, f"targets.{name}", rest, name=name, addresses=tuple(addresses),
                     tls=_target_tls(where, name, spec))


# A target's TLS keys and the ClientTLS fields they set.
_TLS_KEYS = {"tls_ca": "ca", "tls_cert": "cert", "tls_key": "key", "tls_server_name": "server_name"}


def _target_tls(where: str, name: str, spec: Mapping[str, Any]) -> Optional[ClientTLS]:
    """The TLS settings of ``[targets.NAME]``, their files read and checked; None without ``tls_ca``."""
    given = {k: v for k, v in spec.items() if k in _TLS_KEYS}
    for key, value in given.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: [targets.{name}] {key} must be a non-empty string; got {value!r}")
    if not given:
        return None
    if "tls_ca" not in given:
        raise ValueError(f"{where}: [targets.{name}] sets {sorted(given)} without tls_ca, the CA bundle that "
                         f"turns TLS on")
    values = {_TLS_KEYS[k]: (v if k == "tls_server_name" else Path(v)) for k, v in given.items()}
    try:
        return check_client_tls(ClientTLS(**values))
    except ValueError as err:
        raise ValueError(f"{where}: [targets.{name}]: {err}") from None


def parse_targets_env(value: str) -> dict[str, TargetConfig]:
    """``name=host:port,host:port;other=host:port`` as target configs."""
    targets = {}
    for item in filter(None, (part.strip() for part in value.split(";"))):
        name, sep, addresses = item.partition("=")
        if not sep or not name.strip() or not addresses.strip():
            raise ValueError(f"MULTISHAP_TARGETS entry {item[:80]!r} is not name=host:port[,host:port]")
        targets[name.strip()] = TargetConfig(name.strip(), tuple(a.strip() for a in addresses.split(",") if a.strip()))
    return targets


def _environment_limits(limits: Limits, environ: Mapping[str, str]) -> Limits:
    """``limits`` with the MULTISHAP_<LIMIT> variables applied, each parsed as its type."""
    values: dict[str, Any] = {}
    for f in fields(Limits):
        variable = f"MULTISHAP_{f.name.upper()}"
        raw = environ.get(variable, "").strip()
        if not raw:
            continue
        try:
            values[f.name] = int(raw) if isinstance(f.default, int) else float(raw)
        except ValueError:
            kind = "a whole number" if isinstance(f.default, int) else "a number"
            raise ValueError(f"{variable} must be {kind}; got {raw[:80]!r}") from None
    return _settings(Limits, "the environment", "limits", values, base=limits)


def load_config(path: Optional[str | Path] = None, environ: Mapping[str, str] = os.environ) -> ExplainerConfig:
    """Read the TOML file (if any), then apply environment overrides; ValueError names what is wrong."""
    data: dict = {}
    where = str(path) if path is not None else "the configuration"
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as err:
            raise ValueError(f"cannot read the configuration file {path}: {err.strerror}") from None
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path} is not valid TOML: {err}") from None
    unknown = set(data) - {"targets", "limits", "server", "jobs"}
    if unknown:
        raise ValueError(f"{where}: unknown sections {sorted(unknown)}; expected [server], [limits], [jobs] and "
                         "[targets.NAME]")
    targets = {name: _target(where, name, spec) for name, spec in data.get("targets", {}).items()}
    limits = _settings(Limits, where, "limits", data.get("limits", {}))
    server = _settings(ServerSettings, where, "server", data.get("server", {}))
    jobs = _settings(JobSettings, where, "jobs", data.get("jobs", {}))
    if environ.get("MULTISHAP_TARGETS"):
        targets.update(parse_targets_env(environ["MULTISHAP_TARGETS"]))
    limits = _environment_limits(limits, environ)
    if limits.default_budget > limits.max_budget:
        limits = replace(limits, default_budget=limits.max_budget)
    return ExplainerConfig(targets=targets, limits=limits, server=server, jobs=jobs)
