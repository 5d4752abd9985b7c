"""``multishap serve``: the Explainer gRPC service in front of the configured targets."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from multishap.service import defaults

from . import types
from .env import Parser
from .serving import listen_options, listening, metrics_port, serve_until_stopped


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
    p.option("tokens", "tokens file: every call but health checks needs a bearer token it lists, by its "
             "SHA-256 (lines 'IDENTITY sha256:HEX [methods=A,B] [max_in_flight=N]', made by multishap token new)",
             type=types.path)
    p.option("job-store", "SQLAlchemy URL of the job store: sqlite:///PATH, or postgresql+psycopg://USER@HOST/DB "
             "for replicas that share jobs (default: the config's [jobs] store, else "
             f"sqlite:///{defaults.JOB_STORE_FILE})")
    p.option("job-workers", "job items this replica explains at once, 0: store and serve jobs only "
             "(default: the config's [jobs] workers)", type=types.NON_NEGATIVE)
    p.set_defaults(run=run)


def default_job_store() -> str:
    """The SQLite file jobs persist in when nothing else is configured (its folder is created)."""
    path = Path(defaults.JOB_STORE_FILE).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _store_kind(url: str) -> str:
    """What the job store is, without its URL (which may hold a password): "sqlite", "postgresql", ..."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name()


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM, then drain: the queue is refused, work in flight gets the grace period."""
    from multishap.service.explainer import serve_explainer
    from multishap.service.rpc.config import load_config

    config = load_config(args.config)
    config = replace(config, jobs=replace(
        config.jobs, store=args.job_store or config.jobs.store or default_job_store(),
        workers=config.jobs.workers if args.job_workers is None else args.job_workers))
    if not config.targets:
        print("error: no targets configured: give --config or MULTISHAP_TARGETS=name=host:port", file=sys.stderr)
        return 2
    running, servicer = serve_explainer(config, host=args.host, port=args.port,
                                        metrics_port=metrics_port(args.metrics_port), tokens=args.tokens,
                                        **listening(args))
    print(f"explainer on {args.host}:{running.port}{' (TLS)' if args.tls_cert else ''}, "
          f"metrics on {running.metrics_port}, health port {running.health_port or 'off'}, "
          f"targets: {', '.join(config.targets)}, jobs in {_store_kind(config.jobs.store)} "
          f"({config.jobs.workers} workers)", flush=True)
    grace = config.server.grace_s if args.grace is None else args.grace
    delay = config.server.drain_delay_s if args.drain_delay is None else args.drain_delay
    try:
        return serve_until_stopped(running, grace, delay, servicer.drain)
    finally:
        servicer.close()
