"""The ``multishap`` command: run servers, explain instances and datasets, score explainers.

Each sub-command lives in its own module of this package; this one builds the parser and turns errors into
one ``error: ...`` line: exit code 2 for bad input or configuration, 1 for a failed call, an unreadable file
or a missing optional dependency (with the ``pip install 'multishap[EXTRA]'`` that brings it).
"""

from __future__ import annotations

import logging
import sys
from typing import Optional, Sequence

from multishap import __version__

from ..errors import ExplainerError
from . import adapter, audit, compare, dataset, explain, faithfulness, jobs, report, serve, simulator, targets, token
from .env import RULE, Parser
from .extras import missing_extra_hint

__all__ = ["build_parser", "main"]

COMMANDS = (serve, adapter, simulator, explain, dataset, jobs, audit, faithfulness, compare, report, targets,
            token)


def build_parser() -> Parser:
    """The whole command line: every sub-command, its options and their environment variables."""
    parser = Parser(
        prog="multishap",
        description="Cross-modal Shapley interactions (Φ: image patches x text tokens) for vision-language "
                    "models, and faithfulness scores for other explainers.",
        epilog=RULE,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub, parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; its errors end in one line on stderr and a non-zero exit code, never a traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ImportError as err:
        hint = missing_extra_hint(err)
        if hint is None:
            raise
        return _error(hint, 1)
    except ExplainerError as err:
        return _error(f"{err.code}: {err.details}", 1)
    except ValueError as err:
        return _error(str(err), 2)
    except OSError as err:
        return _error(str(err), 1)


def _error(message: str, code: int) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return code
