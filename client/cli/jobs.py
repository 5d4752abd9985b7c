"""``multishap jobs submit|watch|get|list|cancel``: dataset audits that run server-side, in the explainer's job store.

``submit`` stores the manifest's instances as one job and prints its id at once; closing the
terminal does not stop it. ``watch`` prints rows as they are stored (and picks up where it was
after a dropped connection), ``get`` prints a job and, once it ended, its table or writes its rows
to a JSON-lines file.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from ..jobs import STATES, job_report
from . import types
from .client_options import client_options, connection, dataset_arguments, dataset_options
from .dataset import read_manifest
from .env import Parser


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``jobs`` and its five sub-commands."""
    jobs = parent.command_parser(sub, "jobs", help="server-side jobs: submit a dataset audit, watch, get, list, "
                                 "cancel", description=__doc__.split("\n\n")[1].replace("\n", " "))
    commands = jobs.add_subparsers(dest="jobs_command", required=True, metavar="SUBCOMMAND")

    p = jobs.command_parser(commands, "submit", help="store a manifest's instances as one job; prints its id")
    p.add_argument("manifest", type=types.path, help="the JSON-lines manifest (as explain-dataset reads it)")
    client_options(p)
    p.option("name", "a label for the job", "")
    dataset_options(p)
    p.flag("watch", "then watch it until it ends")
    p.set_defaults(run=submit)

    p = jobs.command_parser(commands, "watch", help="print a job's rows as they are stored, until it ends")
    p.add_argument("job_id", help="the id submit printed")
    client_options(p, need_target=False)
    p.option("after-row", "print only rows numbered above this", 0, type=types.NON_NEGATIVE)
    p.set_defaults(run=watch)

    p = jobs.command_parser(commands, "get", help="print a job: its state, and its table once it ended")
    p.add_argument("job_id", help="the id submit printed")
    client_options(p, need_target=False)
    p.option("out", "also write the job's rows to this JSON-lines file (waits for the job to end)", type=types.path)
    p.set_defaults(run=get)

    p = jobs.command_parser(commands, "list", help="the stored jobs, newest first")
    client_options(p, need_target=False)
    p.option("state", "only jobs in this state", type=types.one_of(tuple(STATES)), choices=tuple(STATES))
    p.option("limit", "at most this many", 50, type=types.POSITIVE)
    p.set_defaults(run=list_jobs)

    p = jobs.command_parser(commands, "cancel", help="stop a job: items not finished are not run, rows are kept")
    p.add_argument("job_id", help="the id submit printed")
    client_options(p, need_target=False)
    p.set_defaults(run=cancel)


def _client(args: argparse.Namespace):
    from ..sdk import ExplainerClient

    return ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries, **connection(args))


def submit(args: argparse.Namespace) -> int:
    """Store the job, print its id; with --watch, then watch it."""
    records = read_manifest(args.manifest)
    with _client(args) as client:
        job = client.submit_dataset(records, target=args.target, name=args.name, **dataset_arguments(args))
        print(job.id, flush=True)
        if args.watch:
            return _watch(job, 0)
    return 0


def watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch(client.job(args.job_id), args.after_row)


def _watch(job, after_row: int) -> int:
    """One line per row as it lands, then the job's summary; exit 1 when any row failed or the job did not succeed."""
    failed = 0
    for row in job.watch(after_row=after_row):
        if row.error is not None:
            failed += 1
            print(f"{row.row}\t{row.item_id}\tfailed: {row.error}", flush=True)
        elif row.explanation is not None:
            print(f"{row.row}\t{row.item_id}\tsynergy ratio {row.explanation.metrics.synergy_ratio:.3f}", flush=True)
        else:
            print(f"{row.row}\t{row.item_id}\tF_syn {row.faithfulness.f_syn:.3f}", flush=True)
    status = job.status()
    print(_summary(status))
    return 0 if status.state == "succeeded" and not failed else 1


def get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        job = client.job(args.job_id)
        status = job.status()
        print(_summary(status))
        if args.out is None and not status.ended:
            return 0
        rows = job.rows()
        if args.out is not None:
            _write_rows(args.out, rows)
            print(f"wrote {len(rows)} rows to {args.out}")
        if status.kind == "dataset":
            print(job_report(rows, job.status()).table())
    return 0


def list_jobs(args: argparse.Namespace) -> int:
    with _client(args) as client:
        found = client.jobs(state=args.state, limit=args.limit)
    print("| id | kind | state | done | failed | items | MSR | created | name |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in found:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.created))
        print(f"| {s.id} | {s.kind} | {s.state} | {s.items_done} | {s.items_failed} | {s.items} | {s.msr:.3f} | "
              f"{created} | {s.name} |")
    return 0


def cancel(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(_summary(client.job(args.job_id).cancel()))
    return 0


def _summary(status) -> str:
    line = (f"job {status.id} ({status.kind}, {status.target}): {status.state}, {status.items_done}/{status.items} "
            f"rows, {status.items_failed} failed")
    if status.items_done - status.items_failed:
        line += f"; MSR {status.msr:.3f}  SDR {status.sdr:.3f}"
    if status.error:
        line += f"; {status.error}"
    return line


def _write_rows(path: Path, rows) -> None:
    """The rows as explain-dataset's results file writes them: one JSON object per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for row in rows:
            line = {"id": row.item_id, "row": row.row, "attempts": row.attempts}
            if row.explanation is not None:
                line["explanation"] = row.explanation.to_dict()
            elif row.faithfulness is not None:
                line["faithfulness"] = row.faithfulness.to_dict()
            else:
                line["error"] = row.error
            f.write(json.dumps(line) + "\n")
