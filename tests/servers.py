"""Real servers on loopback for tests: synthetic adapters (optionally slow or faulty) and an explainer."""

from __future__ import annotations

import time
from contextlib import contextmanager

import grpc
import numpy as np

from images import png
from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.rpc.config import ExplainerConfig, JobSettings, Limits, ServerSettings, TargetConfig
from multishap.service.explainer import serve_explainer
from multishap.v1 import common_pb2, explainer_pb2_grpc, scorer_pb2, scorer_pb2_grpc

TEXT = "a cat lying on a couch"


class SlowBackend(SyntheticBackend):
    """The synthetic game, taking ``delay`` seconds per Score request (a stand-in for a model)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def forward(self, instance, masks):
        time.sleep(self.delay)
        return super().forward(instance, masks)


class RecordingBackend(SyntheticBackend):
    """The synthetic game, keeping every decoded instance it prepares (what the explainer forwarded)."""

    def __init__(self) -> None:
        self.seen = []

    def prepare(self, instance):
        self.seen.append(instance)
        return super().prepare(instance)

    @property
    def masking(self) -> list:
        """The masking options of the instances seen, in order."""
        return [instance.masking for instance in self.seen]


class PreferringBackend(RecordingBackend):
    """The synthetic game with its own Describe preferences (batch, timeout, costs), keeping the number of
    coalitions of every forward pass (one per Score or ScoreProduct request) in ``batches``; each pass takes
    ``delay`` seconds."""

    def __init__(self, batch: int = 0, timeout: float = 0.0, costs: scorer_pb2.Costs | None = None,
                 delay: float = 0.0) -> None:
        super().__init__()
        self.batch, self.timeout, self.delay = batch, timeout, delay
        self.own_costs = costs
        self.batches: list[int] = []

    def preferred_batch(self) -> int:
        return self.batch

    def preferred_timeout(self) -> float:
        return self.timeout

    def costs(self) -> scorer_pb2.Costs:
        return self.own_costs if self.own_costs is not None else super().costs()

    def forward(self, instance, masks):
        self.batches.append(len(masks))
        time.sleep(self.delay)
        return super().forward(instance, masks)


class NaNBackend(SyntheticBackend):
    """Returns NaN for every tenth coalition."""

    def forward(self, instance, masks):
        values = super().forward(instance, masks).copy()
        values[::10] = np.nan
        return values


def instance(family: str = "mlp", seed: str = "3", **overrides) -> common_pb2.Instance:
    fields = dict(image=png(), text=TEXT, target="cat", grid=common_pb2.Grid(rows=3, cols=3),
                  parameters={"family": family, "seed": seed})
    fields.update(overrides)
    return common_pb2.Instance(**fields)


@contextmanager
def adapters(*backends):
    running = [serve_adapter(b)[0] for b in backends]
    try:
        yield running
    finally:
        for r in running:
            r.stop(None)


@contextmanager
def adapter(backend, **options):
    """One adapter (``serve_adapter`` options: limits, cache_entries, cache_bytes...) and a Scorer stub to it;
    yields (running server, servicer, stub)."""
    running, servicer = serve_adapter(backend, **options)
    channel = grpc.insecure_channel(running.address)
    try:
        yield running, servicer, scorer_pb2_grpc.ScorerStub(channel)
    finally:
        channel.close()
        running.stop(None)


@contextmanager
def explainer(targets: dict[str, list[str]], limits: Limits = Limits(), server: ServerSettings = ServerSettings(),
              jobs: JobSettings = JobSettings(), **target_options):
    config = ExplainerConfig(
        targets={name: TargetConfig(name, tuple(addrs), **target_options) for name, addrs in targets.items()},
        limits=limits, server=server, jobs=jobs,
    )
    running, servicer = serve_explainer(config)
    channel = grpc.insecure_channel(running.address)
    try:
        yield running, explainer_pb2_grpc.ExplainerStub(channel), servicer
    finally:
        channel.close()
        running.stop(None)
        servicer.close()


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_process(*args: str, env: dict | None = None, log=None):
    """``multishap ARGS`` as a child process, text mode; its output goes to the open file
    ``log``, else to pipes (read them: a full pipe blocks a server that logs every RPC)."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    out = subprocess.PIPE if log is None else log
    return subprocess.Popen([sys.executable, "-m", "multishap.client.cli", *args], env=full_env,
                            stdout=out, stderr=subprocess.STDOUT if log is not None else subprocess.PIPE, text=True)


def wait_serving(address: str, process=None, timeout: float = 60.0) -> None:
    """Block until the server at ``address`` answers a health check (or its process died)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stop = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < stop:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                return
            except grpc.RpcError:
                time.sleep(0.1)
    raise RuntimeError(f"no server answered at {address} within {timeout} s")


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS line")
