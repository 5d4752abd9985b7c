"""What every server command shares: the listening options and serving until SIGTERM, then draining."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable, Optional

from . import types
from .env import Parser


def listen_options(p: Parser, port: int, metrics_port: int, grace: Optional[float] = 30.0,
                   drain_delay: Optional[float] = 2.0, defaults_note: str = "") -> None:
    """--host, --port, --metrics-port, --grace and --drain-delay of a server command."""
    p.option("host", "address to listen on", "127.0.0.1")
    p.option("port", "gRPC port (0: any free port)", port, type=types.PORT)
    p.option("metrics-port", "Prometheus /metrics port (-1: off, 0: any free port)", metrics_port,
             type=types.METRICS_PORT)
    p.option("grace", "seconds in-flight work gets on SIGTERM" + defaults_note, grace, type=types.SECONDS)
    p.option("drain-delay", "seconds NOT_SERVING is reported before the port closes on SIGTERM" + defaults_note,
             drain_delay, type=types.SECONDS)


def metrics_port(value: int) -> Optional[int]:
    """The metrics port as the servers take it: None for off (-1)."""
    return None if value < 0 else value


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
