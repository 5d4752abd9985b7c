"""``multishap serve``: the Explainer gRPC service in front of the configured targets."""

from __future__ import annotations

import argparse
import sys

from multishap.service import defaults

from . import types
from .env import Parser
from .serving import listen_options, metrics_port, serve_until_stopped


def add_parser(sub: argparse._SubParsersAction, parent: Parser) -> None:
    """Register ``serve`` and its options."""
    p = parent.command_parser(sub, "serve", help="run the explainer service",
                              description="Run the Explainer gRPC service in front of configured targets. Targets "
                                          "and limits come from --config and from MULTISHAP_TARGETS and "
                                          "MULTISHAP_<LIMIT> (see deploy/explainer.toml).")
    p.option("config", "TOML file with [server], [limits] and [targets.NAME] (see deploy/explainer.toml)",
             type=types.path)
    listen_options(p, defaults.EXPLAINER_PORT, defaults.EXPLAINER_METRICS_PORT, grace=None, drain_delay=None,
                   defaults_note=" (default: the config's [server] value)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM, then drain: the queue is refused, work in flight gets the grace period."""
    from multishap.service.explainer import serve_explainer
    from multishap.service.rpc.config import load_config

    config = load_config(args.config)
    if not config.targets:
        print("error: no targets configured: give --config or MULTISHAP_TARGETS=name=host:port", file=sys.stderr)
        return 2
    running, servicer = serve_explainer(config, host=args.host, port=args.port,
                                        metrics_port=metrics_port(args.metrics_port))
    print(f"explainer on {args.host}:{running.port}, metrics on {running.metrics_port}, "
          f"targets: {', '.join(config.targets)}", flush=True)
    grace = config.server.grace_s if args.grace is None else args.grace
    delay = config.server.drain_delay_s if args.drain_delay is None else args.drain_delay
    try:
        return serve_until_stopped(running, grace, delay, servicer.drain)
    finally:
        servicer.close()
