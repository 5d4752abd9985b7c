"""``multishap explain``: explain one instance, print its metrics and write its JSON and heatmap; with
``--dry-run``, say what it would score and cost, and warn when that passes the adapter's spending caps."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from multishap.service import defaults
from multishap.service.math.estimators import INDICES, METHODS
from multishap.service.math.estimators.registry import method_help

from ..explanation import Target, Usage
from . import types
from .client_options import (audit_arguments, audit_options, client_options, connection, instance_options, masking,
                             masking_options, parameters, precision, precision_options)
from .env import Parser
from .extras import require


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``explain`` and its options."""
    p = parent.command_parser(sub, "explain", help="explain one image and text",
                              description="Explain one instance; print the metrics and write "
                                          "<image>-<hash>-explanation.json and -heatmap.png into --out, one pair per "
                                          "instance and target (heatmaps need pip install 'multishap[plot]').")
    client_options(p)
    instance_options(p)
    p.option("method", method_help(), defaults.METHOD, type=types.one_of(METHODS), choices=METHODS)
    p.option("index", "interaction index", defaults.INDEX, type=types.one_of(INDICES), choices=INDICES)
    masking_options(p)
    precision_options(p)
    audit_options(p, per_instance=True)
    p.option("stability", "re-explain under these perturbations (comma-separated: seed, jpeg, noise, shift) and "
             "report how stable Φ is; each repeat is one more explanation", type=types.perturbations)
    p.option("stability-repeats", "re-explanations per perturbation", 3, type=types.POSITIVE)
    p.flag("dry-run", "only say how many coalitions the method would score and what they would cost")
    p.flag("html", "also write the self-contained HTML report (<image>-<hash>-report.html)")
    p.option("out", "folder for the JSON and PNG", "out", type=types.path)
    p.set_defaults(run=run)


def over_caps(target: Target, usage: Usage) -> Optional[str]:
    """One warning line when a dry run's estimate passes the target adapter's per-explanation caps
    (``adapter openai --max-requests / --max-cost``), else None: the real run would stop part-way."""
    over = []
    if target.max_requests is not None and usage.requests > target.max_requests:
        over.append(f"{usage.requests} endpoint requests, over the adapter's cap of {target.max_requests} "
                    f"(--max-requests)")
    if target.max_cost is not None and usage.cost > target.max_cost:
        over.append(f"a cost of {usage.cost:.4f}, over the adapter's cap of {target.max_cost:g} (--max-cost)")
    if not over:
        return None
    return (f"warning: this explanation would need {' and '.join(over)}: it would stop with RESOURCE_EXHAUSTED "
            f"part-way (what it paid for stays cached)")


def run(args: argparse.Namespace) -> int:
    """Explain (or estimate) one instance through the explainer."""
    from ..report import dry_run_summary, save, summary
    from ..sdk import ExplainerClient

    if not args.dry_run:
        require("matplotlib")  # the heatmap: fail before paying for scores, not after
    shared = dict(target=args.target, answer=args.answer, grid=args.grid, method=args.method, budget=args.budget,
                  seed=args.seed, index=args.index, parameters=parameters(args.param), **masking(args),
                  **precision(args))
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries,
                         **connection(args)) as client:
        exp = client.explain(args.image, args.text, dry_run=args.dry_run, **shared, **audit_arguments(args),
                             progress=True)
        if args.stability and not args.dry_run:
            print(f"stability: {len(args.stability) * args.stability_repeats} more explanations "
                  f"({', '.join(args.stability)} x {args.stability_repeats})", file=sys.stderr)
            exp.stability = client.stability(args.image, args.text, perturbations=args.stability,
                                             repeats=args.stability_repeats, reference=exp, **shared)
    if args.dry_run:
        print(dry_run_summary(exp))
        if warning := over_caps(exp.target, exp.usage):
            print(warning, file=sys.stderr)
        return 0
    print(summary(exp))
    json_path, png_path = save(exp, Path(args.out))
    print(f"\nwrote {json_path} and {png_path}")
    if args.html:
        page = exp.save_html(json_path.with_name(json_path.name.replace("-explanation.json", "-report.html")))
        print(f"wrote {page}")
    return 0
