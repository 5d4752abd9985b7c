"""``multishap faithfulness``: F_syn and the unimodal metrics of an explanation, printed and optionally written as
JSON and as a plot of its insertion and deletion curves."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from multishap.service import defaults
from multishap.service.math.attributions import BUILT_IN_EXPLAINERS

from . import types
from .client_options import client_options, connection, instance_options, masking, masking_options, parameters
from .env import Parser
from .extras import require


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``faithfulness`` and its options."""
    p = parent.command_parser(sub, "faithfulness", help="score an explanation with F_syn and unimodal metrics")
    client_options(p)
    instance_options(p)
    masking_options(p)
    p.option("explainer", "built-in explainer when --scores is not given", defaults.FAITHFULNESS_EXPLAINER,
             type=types.one_of(BUILT_IN_EXPLAINERS), choices=BUILT_IN_EXPLAINERS)
    p.option("scores", "JSON file {\"patch_scores\": [...], \"token_scores\": [...]}", type=types.path)
    p.option("steps", "alpha steps", defaults.FAITHFULNESS_STEPS, type=types.POSITIVE)
    p.option("eps", "the curves' tolerance", defaults.FAITHFULNESS_EPS, type=types.number(0.0))
    p.flag("macro", "also compute the exact macro-game SII reference")
    p.option("chunks", "macro-game chunks: 2^(2 + chunks) coalitions per step", defaults.MACRO_CHUNKS,
             type=types.POSITIVE)
    p.option("out", "write the report as JSON to this file", type=types.path)
    p.option("plot", "save the insertion and deletion curves to this image file (needs multishap[plot])",
             type=types.path)
    p.set_defaults(run=run)


def read_scores(path: Path | None) -> dict:
    """The given explanation's scores, or {} to let the built-in explainer make them."""
    if path is None:
        return {}
    try:
        scores = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"could not read --scores {str(path)!r}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"--scores {str(path)!r} is not JSON ({err})") from None
    if not isinstance(scores, dict):
        raise ValueError(f"--scores {str(path)!r} must hold a JSON object with patch_scores and token_scores")
    return scores


def run(args: argparse.Namespace) -> int:
    """Score the explanation, print the metrics table, then write --out and --plot."""
    from ..sdk import ExplainerClient

    scores = read_scores(args.scores)
    if args.plot:
        require("matplotlib")  # fail before the scoring, not after
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries,
                         **connection(args)) as client:
        r = client.faithfulness(args.image, args.text, target=args.target, answer=args.answer, grid=args.grid,
                                patch_scores=scores.get("patch_scores"), token_scores=scores.get("token_scores"),
                                explainer=args.explainer, steps=args.steps, eps=args.eps, macro_game=args.macro,
                                chunks=args.chunks, seed=args.seed, budget=args.budget,
                                parameters=parameters(args.param), progress=True, **masking(args))
    print("| metric | value |\n|---|---|")
    for name, value in [("F_syn", r.f_syn), ("F_ins", r.f_ins), ("F_del", r.f_del),
                        ("F_syn unclipped", r.f_syn_unclipped), ("F_syn raw", r.f_syn_raw),
                        ("visual SRG", r.visual.srg), ("textual SRG", r.text.srg)]:
        print(f"| {name} | {value:+.4f} |")
    if r.macro_auc is not None:
        print(f"| macro-game SII area | {r.macro_auc:+.4f} |")
    print(f"\n{r.evaluations} coalitions scored in {r.seconds:.2f} s")
    written = []
    if args.out:
        _parent(args.out).write_text(r.to_json(indent=1))
        written.append(str(args.out))
    if args.plot:
        r.plot().savefig(_parent(args.plot), dpi=110, bbox_inches="tight")
        written.append(str(args.plot))
    if written:
        print(f"wrote {' and '.join(written)}")
    return 0


def _parent(path: Path) -> Path:
    """``path``, its folder made if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
