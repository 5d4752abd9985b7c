"""``multishap explain-dataset``: explain every instance of a JSON-lines manifest into a resumable results file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multishap.service import defaults

from . import types
from .client_options import client_options, connection, dataset_arguments, dataset_options
from .env import Parser


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``explain-dataset`` and its options."""
    p = parent.command_parser(sub, "explain-dataset", help="explain every instance of a JSONL manifest (resumable)",
                              description="Each manifest line: {\"id\", \"image\" (path relative to the manifest), "
                                          "\"text\", \"answer\"}. Finished instances in --out are skipped.")
    p.add_argument("manifest", type=types.path, help="the JSON-lines manifest")
    client_options(p)
    dataset_options(p)
    p.option("concurrency", "instances explained at once", defaults.DATASET_CONCURRENCY, type=types.POSITIVE)
    p.option("out", "results file (JSON lines)", Path(defaults.RESULTS_FILE), type=types.path)
    p.set_defaults(run=run)


def read_manifest(manifest: Path) -> list[dict]:
    """The manifest's records, each image resolved against the manifest's folder; ValueError names the bad line."""
    try:
        lines = manifest.read_text().splitlines()
    except OSError as err:
        raise ValueError(f"could not read the manifest {str(manifest)!r}: {err.strerror}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{manifest}:{n}: not JSON ({err})") from None
        if not isinstance(record, dict) or "image" not in record or "text" not in record:
            raise ValueError(f"{manifest}:{n}: each line needs \"image\" and \"text\"")
        image = (manifest.parent / str(record["image"])).resolve()
        if not image.is_file():
            raise ValueError(f"{manifest}:{n}: image file {str(image)!r} does not exist")
        records.append({**record, "image": str(image)})
    return records


def run(args: argparse.Namespace) -> int:
    """Explain what the results file does not hold yet; exit 1 when any instance failed."""
    from ..report import usage_line
    from ..sdk import ExplainerClient

    records = read_manifest(args.manifest)
    with ExplainerClient(args.address, timeout=args.timeout, max_retries=args.max_retries,
                         **connection(args)) as client:
        report = client.explain_dataset(records, target=args.target, concurrency=args.concurrency, out=args.out,
                                        **dataset_arguments(args))
    print(report.table())
    print(f"\nMSR {report.msr:.3f}  SDR {report.sdr:.3f}  over {len(report.rows)} instances "
          f"({report.skipped} resumed from {args.out}, {len(report.failed)} failed)")
    if report.splits:
        print()
        print(report.splits_table())
    if cost := usage_line(report.usage):
        print(cost)
    for failure in report.failed:
        print(f"failed {failure['id']}: {failure['error']}", file=sys.stderr)
    return 1 if report.failed else 0
