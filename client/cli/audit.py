"""``multishap audit``: explain every instance of a JSON-lines manifest at one or more targets, on threads or on
Ray, into a resumable Parquet directory, and print MSR and SDR per target."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional


from ..engines import AUDIT_OUT, CONCURRENCY, ENGINES, MAX_IN_FLIGHT_PER_TARGET
from . import types
from .client_options import client_options, connection, dataset_arguments, dataset_options
from .dataset import read_manifest
from .env import Parser, variable
from .extras import require


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``audit`` and its options."""
    p = parent.command_parser(sub, "audit", help="explain a JSONL manifest at one or more targets (local or Ray)",
                              description="Each manifest line: {\"id\", \"image\" (path relative to the manifest), "
                                          "\"text\", \"answer\"}. Every instance is explained at every --target; "
                                          "rows already in --out are skipped, so a killed audit resumes.")
    p.add_argument("manifest", type=types.path, help="the JSON-lines manifest")
    client_options(p, need_target=False)
    target_options(p)
    p.option("engine", "where explanations run: local (threads here) or ray (Ray tasks)", "local",
             type=types.one_of(ENGINES), choices=ENGINES)
    p.option("ray-address", "Ray cluster to run on, e.g. ray://head:10001 or auto (default: RAY_ADDRESS, else a "
             "local Ray started for the audit); only with --engine ray")
    dataset_options(p)
    p.option("concurrency", "explanations in flight at once, all targets together", CONCURRENCY, type=types.POSITIVE)
    p.option("max-in-flight-per-target", "explanations in flight at any one target", MAX_IN_FLIGHT_PER_TARGET,
             type=types.POSITIVE)
    p.option("out", "results: a directory of Parquet parts", Path(AUDIT_OUT), type=types.path)
    p.option("job-store", "also store the rows in this job store (a SQLAlchemy URL, as `serve --job-store`): one "
             "job per target, served by the explainer's Jobs API (needs --name)")
    p.option("name", "the audit's name in the job store; an audit of the same name continues its jobs", "")
    p.set_defaults(run=run)


class _Repeated(argparse.Action):
    """A repeatable option whose default (its variable's list) the command line replaces rather than extends."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        given = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*([] if given is self.default else given), values])


def target_options(p: Parser) -> None:
    """--target NAME, repeatable, or its variable holding comma-separated names."""
    env = variable(p.command, "target")
    p.variables["target"] = env
    from_env = [name.strip() for name in p.environ.get(env, "").split(",") if name.strip()] or None
    p.add_argument("--target", action=_Repeated, default=from_env, required=from_env is None, metavar="NAME",
                   dest="targets", help=f"a target configured on the explainer; repeat for more (env {env}: "
                                        "names separated by commas)")


def run(args: argparse.Namespace) -> int:
    """Audit what the results directory does not hold yet; exit 1 when any row failed."""
    require("pyarrow")
    if args.engine == "ray":
        require("ray")
    from ..audit import run_audit

    records = read_manifest(args.manifest)
    report = run_audit(records, address=args.address, targets=args.targets, engine=args.engine, out=args.out,
                       ray_address=args.ray_address, concurrency=args.concurrency,
                       max_in_flight_per_target=args.max_in_flight_per_target, timeout=args.timeout,
                       max_retries=args.max_retries, job_store=args.job_store, job_name=args.name,
                       **connection(args), **dataset_arguments(args))
    print(report.table())
    print(f"\n{len(report.rows)} rows in {args.out} ({report.skipped} resumed, {len(report.failures)} failed)")
    for target, job_id in report.jobs.items():
        print(f"job {job_id} holds the rows at {target} (multishap jobs get {job_id})")
    for failure in report.failures:
        print(f"failed {failure['id']} at {failure['target']}: {failure['error']}", file=sys.stderr)
    return 1 if report.failures else 0
