"""``multishap report``: a self-contained HTML page of an explanation JSON file (``explain --out``) or of a dataset
results file (``explain-dataset --out``, JSON lines), written next to it unless ``--out`` says where."""

from __future__ import annotations

import argparse
import json
import stat
from pathlib import Path
from typing import Any, Union

from . import types
from .env import Parser, variable


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``report`` and its options."""
    p = parent.command_parser(sub, "report", help="write a self-contained HTML report of a result file",
                              description="RESULTS is an explanation JSON file (explain --out) or a dataset "
                                          "results JSON-lines file (explain-dataset --out). The page needs no "
                                          "network: styles, script and images are inline.")
    p.add_argument("results", type=types.path, metavar="RESULTS",
                   help="the explanation JSON or dataset results JSONL file")
    env = variable(p.command, "out")
    p.variables["out"] = env
    p.add_argument("--out", "-o", type=types.path, default=Path(p.environ[env]) if p.environ.get(env) else None,
                   metavar="OUT", help=f"the page to write (env {env}; default: RESULTS with the suffix .html)")
    p.option("image", "the photo an explanation JSON was explained on (the JSON does not keep it)",
             type=types.path)
    p.option("title", "the page's title (default: MultiSHAP explanation / dataset report)")
    p.set_defaults(run=run)


# Largest results file the command reads: a dataset of 10,000 instances with 16x16 grids and 32 tokens fits.
MAX_RESULTS_BYTES = 256 * 1024 * 1024


def read_results(path: Path) -> Union[dict[str, Any], list[dict[str, Any]]]:
    """The explanation dict in an explanation JSON file, or the result lines of a dataset results file; a file
    that is not a regular file or is over MAX_RESULTS_BYTES is refused before it is read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError(f"results file {str(path)!r} does not exist") from None
    except OSError as err:
        raise ValueError(f"could not read results file {str(path)!r} ({err.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ValueError(f"{str(path)!r} is not a regular file: give an explanation JSON or a results file")
    if info.st_size > MAX_RESULTS_BYTES:
        raise ValueError(f"{str(path)!r} has {info.st_size} bytes, over the {MAX_RESULTS_BYTES >> 20} MiB this "
                         "command reads: split the results file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"could not read results file {str(path)!r} ({err})") from None
    try:
        whole = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        whole = None
    if isinstance(whole, dict) and "phi" in whole:
        return whole
    lines = []
    for raw in text.splitlines():
        try:
            row = json.loads(raw) if raw.strip() else None
        except (json.JSONDecodeError, RecursionError):
            row = None
        if isinstance(row, dict) and "id" in row and (isinstance(row.get("explanation"), dict) or "error" in row):
            lines.append(row)
    if not lines:
        raise ValueError(f"{str(path)!r} is neither an explanation JSON file nor a dataset results file")
    return lines


def run(args: argparse.Namespace) -> int:
    """Read RESULTS, build its page and write it; print the page's path."""
    from ..report_page import write_page

    html = page(args)
    out = args.out or args.results.with_suffix(".html")
    if out.resolve() == args.results.resolve():
        raise ValueError(f"the page would replace its own results file {str(out)!r}; choose another --out")
    written = str(write_page(html, out))
    print(written if written.isprintable() else repr(written))
    return 0


def page(args: argparse.Namespace) -> str:
    """The HTML page of RESULTS; ValueError with one sentence when its content is not what a result holds."""
    results = read_results(args.results)
    try:
        return _page(results, args)
    except (KeyError, TypeError, AttributeError, IndexError, RecursionError) as err:
        raise ValueError(f"{str(args.results)!r} is not a readable results file ({type(err).__name__}: "
                         f"{str(err)[:80]})") from None


def _page(results: Union[dict[str, Any], list[dict[str, Any]]], args: argparse.Namespace) -> str:
    """The explanation's page (with the --image photo) or the dataset's page."""
    from ..report_page import dataset_page, explanation_page

    if isinstance(results, dict):
        from ..explanation import Explanation

        exp = Explanation.from_dict(results)
        if args.image is not None:
            import numpy as np

            from ..images import to_pil

            exp.image = np.asarray(to_pil(args.image))
        return explanation_page(exp, title=args.title)
    if args.image is not None:
        raise ValueError("--image goes with an explanation JSON file, not a dataset results file")
    from ..dataset import results_report

    return dataset_page(results_report(results), title=args.title)
