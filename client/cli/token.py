"""``multishap token new IDENTITY``: a new random bearer token, shown once, and its line for the tokens file
(``multishap serve --tokens``), which stores only the token's SHA-256."""

from __future__ import annotations

import argparse
import secrets

from multishap.service.rpc.auth import IDENTITY, IDENTITY_RULE, METHOD, token_digest

from . import types
from .env import Parser

TOKEN_BYTES = 32


def identity(text: str) -> str:
    """An identity as the tokens file spells it."""
    if not IDENTITY.fullmatch(text):
        raise argparse.ArgumentTypeError(f"an identity is {IDENTITY_RULE}; got {text[:80]!r}")
    return text


def methods(text: str) -> tuple[str, ...]:
    """Method names separated by commas, e.g. ``ListTargets,Explain``."""
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    if not names or not all(METHOD.fullmatch(m) for m in names):
        raise argparse.ArgumentTypeError(f"expected method names separated by commas, e.g. ListTargets,Explain; "
                                         f"got {text[:80]!r}")
    return names


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``token`` and ``token new``."""
    token = parent.command_parser(sub, "token", help="make bearer tokens for multishap serve --tokens",
                                  description="Make bearer tokens for the explainer's tokens file.")
    kinds = token.add_subparsers(dest="token", required=True, metavar="ACTION")
    new = token.command_parser(kinds, "new", help="a new random token and its tokens-file line",
                               description="Print a new random token for IDENTITY (shown only now: nothing keeps "
                                           "it) and the line to add to the tokens file, which holds only its "
                                           "SHA-256.")
    new.add_argument("identity", type=identity, metavar="IDENTITY", help="who the token is for, e.g. alice")
    new.option("methods", "the only methods the token may call, e.g. ListTargets,Explain (default: all)",
               type=methods)
    new.option("max-in-flight", "most Explain and Faithfulness calls of this identity at once (default: no bound)",
               type=types.POSITIVE)
    token.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the tokens-file line, then the token."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    line = [args.identity, token_digest(token)]
    if args.methods:
        line.append("methods=" + ",".join(args.methods))
    if args.max_in_flight:
        line.append(f"max_in_flight={args.max_in_flight}")
    print(f"# add this line to the tokens file of multishap serve --tokens:\n{' '.join(line)}")
    print(f"# {args.identity}'s token, shown only now (send it as MULTISHAP_TOKEN or in a --token-file):\n{token}")
    return 0
