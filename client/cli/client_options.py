"""Options shared by the commands that call the explainer: where it is, and the instance to explain."""

from __future__ import annotations

from typing import Optional, Sequence

from multishap.service import defaults
from multishap.service.rpc.convert import IMAGE_BASELINES

from ..progress import BUDGET_UNITS
from . import types
from .env import Parser


def client_options(p: Parser, need_target: bool = True) -> None:
    """--address, --target, --timeout and --max-retries."""
    p.option("address", "explainer address host:port", defaults.EXPLAINER_ADDRESS)
    if need_target:
        p.option("target", "target name configured on the explainer", required=True)
    p.option("timeout", "seconds before giving up, retries included", type=types.number(0.0, inclusive=False))
    p.option("max-retries", "retries of a call the busy server asks to retry later", defaults.MAX_RETRIES,
             type=types.NON_NEGATIVE)


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
