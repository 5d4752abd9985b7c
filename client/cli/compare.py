"""``multishap compare``: rank explainers by F_syn over a JSON-lines manifest (mean ranks, Wilcoxon tests with
Bonferroni correction, effect sizes)."""

from __future__ import annotations

import argparse
import sys

from multishap.service import defaults
from multishap.service.math.attributions import BUILT_IN_EXPLAINERS

from . import types
from .client_options import client_options, connection, masking, masking_options
from .dataset import read_manifest
from .env import Parser


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``compare`` and its options."""
    p = parent.command_parser(sub, "compare", help="rank explainers by F_syn over a JSONL manifest",
                              description="Each manifest line is an explain-dataset record; it may add its own "
                                          "explanations to compare: \"explanations\": {name: {\"patch_scores\": "
                                          "[...], \"token_scores\": [...]}}.")
    p.add_argument("manifest", type=types.path, help="the JSON-lines manifest")
    client_options(p)
    p.add_argument("--explainer", action="append", type=types.one_of(BUILT_IN_EXPLAINERS),
                   choices=BUILT_IN_EXPLAINERS,
                   help="a built-in explainer to score (repeatable; default: all of them; no environment variable)")
    p.option("grid", "patch grid, rows x columns", defaults.GRID, type=types.grid)
    p.option("budget", "coalitions for the explainers that estimate Φ (0: the server's default)",
             defaults.SERVER_BUDGET, type=types.NON_NEGATIVE)
    p.option("steps", "alpha steps", defaults.FAITHFULNESS_STEPS, type=types.POSITIVE)
    p.option("eps", "the curves' tolerance", defaults.FAITHFULNESS_EPS, type=types.number(0.0))
    p.option("seed", "random seed", defaults.SEED, type=types.NON_NEGATIVE)
    masking_options(p)
    p.option("concurrency", "faithfulness calls at once", defaults.DATASET_CONCURRENCY, type=types.POSITIVE)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Score every record with every explainer, print the ranking; exit 1 when any call failed."""
    from ..sdk import ExplainerClient

    records = read_manifest(args.manifest)
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries,
                         **connection(args)) as client:
        report = client.compare_explainers(records, target=args.target,
                                           explainers=tuple(args.explainer or BUILT_IN_EXPLAINERS),
                                           concurrency=args.concurrency, grid=args.grid, budget=args.budget,
                                           steps=args.steps, eps=args.eps, seed=args.seed, **masking(args))
    print(report.table())
    for failure in report.failed:
        print(f"failed {failure['instance']} ({failure['explainer']}): {failure['error']}", file=sys.stderr)
    return 1 if report.failed else 0
