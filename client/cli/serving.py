"""What every server command shares: the listening options and serving until SIGTERM, then draining."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Optional

from multishap.service.rpc.runtime import MAX_CONNECTION_AGE_S

from . import types
from .env import Parser


def listen_options(p: Parser, port: int, metrics_port: int, grace: Optional[float] = 30.0,
                   drain_delay: Optional[float] = 2.0, defaults_note: str = "") -> None:
    """--host, --port, the TLS files, --metrics-host, --metrics-port, --health-port, --max-connection-age,
    --grace and --drain-delay of a server command."""
    p.option("host", "address to listen on (0.0.0.0: every interface, as in a container)", "127.0.0.1")
    p.option("port", "gRPC port (0: any free port)", port, type=types.PORT)
    p.option("tls-cert", "PEM certificate chain: serve TLS (needs --tls-key; reloaded when the file changes)",
             type=types.path)
    p.option("tls-key", "PEM private key of --tls-cert", type=types.path)
    p.option("tls-client-ca", "PEM CA bundle: require client certificates it signed (mutual TLS; needs --tls-cert)",
             type=types.path)
    p.option("metrics-host", "address /metrics listens on (kept on loopback unless set, whatever --host is)",
             "127.0.0.1")
    p.option("metrics-port", "Prometheus /metrics port (-1: off, 0: any free port)", metrics_port,
             type=types.METRICS_PORT)
    p.option("health-port", "second, plaintext port serving only grpc.health.v1 (for Kubernetes gRPC probes when "
             "the main port needs client certificates; unset: none)", type=types.PORT)
    p.option("max-connection-age", "seconds before a client connection is closed (gracefully) so the client "
             "reconnects and re-resolves, spreading over new replicas (0: never)", MAX_CONNECTION_AGE_S,
             type=types.SECONDS)
    p.option("grace", "seconds in-flight work gets on SIGTERM" + defaults_note, grace, type=types.SECONDS)
    p.option("drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM" + defaults_note,
             drain_delay, type=types.SECONDS)


def metrics_port(value: int) -> Optional[int]:
    """The metrics port as the servers take it: None for off (-1)."""
    return None if value < 0 else value


def listening(args: argparse.Namespace) -> dict[str, Any]:
    """The TLS, /metrics host, health port and connection age options as the servers' keyword arguments;
    ValueError when the TLS files do not go together."""
    from multishap.service.rpc.tls import ServerTLS

    if (args.tls_cert is None) != (args.tls_key is None):
        raise ValueError("--tls-cert and --tls-key go together: give both to serve TLS, or neither")
    if args.tls_client_ca is not None and args.tls_cert is None:
        raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
    tls = None if args.tls_cert is None else ServerTLS(args.tls_cert, args.tls_key, args.tls_client_ca)
    return {"tls": tls, "metrics_host": args.metrics_host, "health_port": args.health_port,
            "max_connection_age_s": args.max_connection_age}


def wait_for_stop() -> None:
    """Block until SIGTERM or Ctrl-C."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    while not stopping.wait(0.5):
        pass


def serve_until_stopped(running, grace: float, drain_delay: float, before_stop: Callable[[], None] = lambda: None,
                        after_stop: Callable[[], None] = lambda: None) -> int:
    """Serve until SIGTERM or Ctrl-C, then drain: report NOT_SERVING for ``drain_delay``
    seconds while still serving (so load balancers move away), call ``before_stop`` (the
    explainer refuses its queue), refuse new RPCs, give those in flight ``grace`` seconds,
    cancel the rest, call ``after_stop`` (a backend finishes and stores what it was paid
    for) and exit; a watchdog exits the process if anything hangs past that."""
    wait_for_stop()
    logging.info("stopping: NOT_SERVING for %.3g s, then in-flight work has %.3g s to finish", drain_delay, grace)
    watchdog = threading.Timer(drain_delay + grace + 10.0, os._exit, (1,))
    watchdog.daemon = True
    watchdog.start()
    running.health.enter_graceful_shutdown()
    time.sleep(drain_delay)
    before_stop()
    running.stop(grace)
    after_stop()
    logging.info("stopped")
    return 0
