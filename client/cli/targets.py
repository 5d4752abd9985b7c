"""``multishap targets``: the explainer's targets and whether each is reachable."""

from __future__ import annotations

import argparse

from multishap.service import defaults

from . import types
from .client_options import connection, security_options
from .env import Parser


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``targets`` and its options."""
    p = parent.command_parser(sub, "targets", help="list the explainer's targets")
    p.option("address", "explainer address host:port", defaults.EXPLAINER_ADDRESS)
    p.option("timeout", "seconds before giving up", 10.0, type=types.number(0.0, inclusive=False))
    security_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One line per target: name, reachability and, where the server shows them, its addresses."""
    from ..sdk import ExplainerClient

    with ExplainerClient(args.address, timeout=args.timeout, **connection(args)) as client:
        for t in client.targets():
            print(f"{t.name}\t{'reachable' if t.reachable else 'UNREACHABLE'}\t{','.join(t.addresses)}")
    return 0
