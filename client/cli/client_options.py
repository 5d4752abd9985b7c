"""Options shared by the commands that call the explainer: where it is, and the instance to explain."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from multishap.service import defaults
from multishap.service.audit import ROLES
from multishap.service.rpc.convert import IMAGE_BASELINES

from ..progress import BUDGET_UNITS
from . import types
from .env import Parser


# The environment variable a client command reads its bearer token from (a secret: never an option's value).
TOKEN_VARIABLE = "MULTISHAP_TOKEN"


def client_options(p: Parser, need_target: bool = True) -> None:
    """--address, --target, --timeout, --max-retries and the connection's security."""
    p.option("address", "explainer address host:port", defaults.EXPLAINER_ADDRESS)
    if need_target:
        p.option("target", "target name configured on the explainer", required=True)
    p.option("timeout", "seconds before giving up, retries included", type=types.number(0.0, inclusive=False))
    p.option("max-retries", "retries of a call the busy server asks to retry later", defaults.MAX_RETRIES,
             type=types.NON_NEGATIVE)
    security_options(p)


def security_options(p: Parser) -> None:
    """TLS to the explainer (--tls, --tls-ca, --tls-cert, --tls-key, --tls-server-name) and --token-file."""
    p.flag("tls", "TLS, checked against the system's CA roots (implied by --tls-ca)")
    p.option("tls-ca", "PEM CA bundle the explainer's certificate must chain to (turns TLS on)", type=types.path)
    p.option("tls-cert", "PEM client certificate, for an explainer that requires mutual TLS (needs --tls-key)",
             type=types.path)
    p.option("tls-key", "PEM private key of --tls-cert", type=types.path)
    p.option("tls-server-name", "name the explainer's certificate must carry, when not the address's host")
    p.option("token-file", f"file holding the bearer token (else {TOKEN_VARIABLE}); sent only over TLS or to "
             "a loopback address", type=types.path)


def connection(args, environ: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """The security options as ExplainerClient's ``tls`` and ``token``; ValueError when they do not go together
    or the token file cannot be read."""
    from multishap.service.rpc.tls import ClientTLS

    environ = os.environ if environ is None else environ
    settings = (args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    tls = None
    if args.tls or any(value is not None for value in settings):
        tls = ClientTLS(*settings)
    return {"tls": tls, "token": _token(args.token_file, environ)}


def _token(path: Optional[Path], environ: Mapping[str, str]) -> Optional[str]:
    """The bearer token from ``path`` (its first line), else from MULTISHAP_TOKEN; None when neither has one."""
    if path is None:
        return environ.get(TOKEN_VARIABLE, "").strip() or None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"the token file {str(path)!r} cannot be read: "
                         f"{getattr(err, 'strerror', None) or 'not UTF-8 text'}") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise ValueError(f"the token file {str(path)!r} is empty: its first line must be the token")
    return token


def instance_options(p: Parser) -> None:
    """The image, text and answer, the grid, adapter parameters, the seed and the budget."""
    p.option("image", "image file", required=True)
    p.option("text", "question, caption or prompt", required=True)
    p.option("answer", "the answer or caption being explained", "")
    p.option("grid", "patch grid, rows x columns", defaults.GRID, type=types.grid)
    p.add_argument("--param", action="append", type=types.key_value, metavar="KEY=VALUE",
                   help="adapter parameter (repeatable; no environment variable)")
    p.option("seed", "random seed", defaults.SEED, type=types.NON_NEGATIVE)
    p.option("budget", "distinct coalitions to evaluate (0: the server's default)", defaults.SERVER_BUDGET,
             type=types.NON_NEGATIVE)


def precision_options(p: Parser) -> None:
    """--target-stderr and --budget-unit: stop at a precision, and count the budget in the target's cost unit."""
    p.option("target-stderr", "stop once every entry's standard error is at most this (0: spend the budget)", 0.0,
             type=types.number(0.0))
    p.option("budget-unit", "what --budget counts: coalitions, or cost (the target's unit: encoder passes for a "
             "dual encoder, requests for an endpoint)", "coalitions", type=types.one_of(BUDGET_UNITS),
             choices=tuple(BUDGET_UNITS))


def precision(args) -> dict[str, object]:
    """The precision options as explain() keywords."""
    return {"target_stderr": args.target_stderr, "budget_unit": args.budget_unit}


def audit_options(p: Parser, per_instance: bool) -> None:
    """The audit parts of an explanation: the model's answer and its check (--ground-truth, --candidate, --role
    where ``per_instance``; a manifest's records carry their own ``ground_truth``, ``candidates`` and ``role``),
    --influence-budget and --faithfulness."""
    p.add_argument("--candidate", action="append", metavar="TEXT",
                   help="an answer, caption or class the model chooses among (repeatable; asks the target for its "
                        "own answer; no environment variable)")
    if per_instance:
        p.option("ground-truth", "the correct answer or caption: asks the target for its own answer and judges it")
        p.option("role", "what the explained answer or caption is: true (the ground truth) or foil",
                 type=types.one_of(ROLES), choices=ROLES)
    p.option("influence-budget", "coalitions for modality influence (0: not computed)", 0, type=types.NON_NEGATIVE)
    p.flag("faithfulness", "also compute F_syn of the explanation's MultiSHAP scores")


def audit_arguments(args) -> dict[str, object]:
    """The :func:`audit_options` as explain() keywords (the check only when asked for)."""
    out: dict[str, object] = {"influence_budget": args.influence_budget, "faithfulness": args.faithfulness}
    if args.candidate:
        out["candidates"] = list(args.candidate)
    if getattr(args, "ground_truth", None) is not None:
        out["ground_truth"] = args.ground_truth
    if getattr(args, "role", ""):
        out["role"] = args.role
    return out


def dataset_options(p: Parser) -> None:
    """What every instance of a manifest is explained with: grid, method, index, budget, precision, seed and the
    audit parts."""
    from multishap.service.math.estimators import INDICES, METHODS
    from multishap.service.math.estimators.registry import method_help

    p.option("grid", "patch grid, rows x columns", defaults.GRID, type=types.grid)
    p.option("method", method_help(), defaults.METHOD, type=types.one_of(METHODS), choices=METHODS)
    p.option("index", "interaction index", defaults.INDEX, type=types.one_of(INDICES), choices=INDICES)
    p.option("budget", "distinct coalitions per instance (0: the server's default)", defaults.SERVER_BUDGET,
             type=types.NON_NEGATIVE)
    precision_options(p)
    p.option("seed", "random seed", defaults.SEED, type=types.NON_NEGATIVE)
    audit_options(p, per_instance=False)


def dataset_arguments(args) -> dict[str, object]:
    """The :func:`dataset_options` as explain() keywords."""
    return dict(grid=args.grid, method=args.method, index=args.index, budget=args.budget, seed=args.seed,
                **precision(args), **audit_arguments(args))


def masking_options(p: Parser) -> None:
    """--baseline, --blur-radius and --text-mask: how masked players are rendered (unset: the adapter's defaults)."""
    baselines = tuple(IMAGE_BASELINES)
    p.option("baseline", "image baseline for masked patches (default: the adapter's; F_syn's protocol uses blur)",
             type=types.one_of(baselines), choices=baselines)
    p.option("blur-radius", "blur radius in pixels for the blur baseline (0: the adapter's default)", 0.0,
             type=types.number(0.0))
    p.option("text-mask", "what a masked word becomes (empty: the adapter's default)", "")


def masking(args) -> dict[str, object]:
    """The masking options as the SDK's keyword arguments."""
    return {"image_baseline": args.baseline, "blur_radius": args.blur_radius, "text_mask": args.text_mask}


def parameters(pairs: Optional[Sequence[tuple[str, str]]]) -> dict[str, str]:
    """The --param pairs as the instance's parameters."""
    return dict(pairs or [])
