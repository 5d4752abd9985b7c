"""A simulated chat endpoint plus the OpenAI adapter in front of it, on loopback, for tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Optional

import grpc
import numpy as np
from PIL import Image

from images import png
from multishap.adapters.openai import (EndpointConfig, OpenAIBackend, OpenAIOptions, RetryPolicy,
                                       ScoringOptions)
from multishap.adapters.openai.simulator import FaultPlan, SimulatedEndpoint, SimulatedTask
from multishap.adapters.server import serve_adapter
from multishap.service.math.games import make_game
from multishap.v1 import common_pb2, scorer_pb2_grpc

KEY = "sk-test-0123456789abcdef"
TEXT = "is the cat on the mat"
TARGET = "yes"
FAMILY, SEED = "mixed", 5


def instance(rows: int = 2, cols: int = 2, text: str = TEXT, target: str = TARGET) -> common_pb2.Instance:
    """An instance the simulator answers with its game (the openai adapter takes no parameters)."""
    return common_pb2.Instance(image=png(40, 30, seed=4), text=text, target=target,
                               grid=common_pb2.Grid(rows=rows, cols=cols))


def synthetic(inst: common_pb2.Instance) -> common_pb2.Instance:
    """The same instance with the parameters that make the synthetic adapter play the simulator's game."""
    out = common_pb2.Instance()
    out.CopyFrom(inst)
    out.parameters.update({"family": FAMILY, "seed": str(SEED)})
    return out


def game_for(inst: common_pb2.Instance):
    return make_game(FAMILY, inst.grid.rows * inst.grid.cols, len(inst.text.split()), SEED)


def shift_for(game) -> float:
    """A constant that keeps every log-probability v - shift below 0."""
    return sum(abs(c) for _, c in game.terms) + 0.5


def simulator(inst: common_pb2.Instance, faults: FaultPlan = FaultPlan(), **kwargs) -> SimulatedEndpoint:
    pixels = np.asarray(Image.open(io.BytesIO(inst.image)).convert("RGB"))
    task = SimulatedTask(pixels, inst.text, inst.target, inst.grid.rows, inst.grid.cols)
    game = game_for(inst)
    shift = shift_for(game)
    return SimulatedEndpoint(task, game, lambda v: v - shift, api_key=KEY, faults=faults, **kwargs)


def options(sim: SimulatedEndpoint, cache: Path, key: str = KEY, scoring: ScoringOptions = ScoringOptions(
        score="logprob"), timeout: float = 0.5, concurrency: int = 8, rpm: Optional[float] = None,
        max_attempts: int = 10, **extra) -> OpenAIOptions:
    endpoint = EndpointConfig(sim.base_url, "sim-vlm", key, timeout=timeout, concurrency=concurrency, rpm=rpm,
                              retry=RetryPolicy(max_attempts=max_attempts, initial_wait=0.01, max_wait=0.05,
                                                deadline=30.0))
    return OpenAIOptions(endpoint=endpoint, scoring=scoring, cache_path=cache, **extra)


@contextmanager
def openai_adapter(opts: OpenAIOptions):
    """The OpenAI adapter as a real gRPC server; yields (running server, backend, Scorer stub)."""
    backend = OpenAIBackend(opts)
    running, _ = serve_adapter(backend)
    channel = grpc.insecure_channel(running.address)
    try:
        yield running, backend, scorer_pb2_grpc.ScorerStub(channel)
    finally:
        channel.close()
        backend.close()
        running.stop(None)


def with_scoring(opts: OpenAIOptions, **changes) -> OpenAIOptions:
    return replace(opts, scoring=replace(opts.scoring, **changes))


def cli_env(key: Optional[str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env.update(MULTISHAP_ADAPTER_OPENAI_PORT="0", MULTISHAP_ADAPTER_OPENAI_METRICS_PORT="-1")
    if key is not None:
        env["OPENAI_API_KEY"] = key
    return env


def cli_args(base_url: str, cache: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "multishap.client.cli", "adapter", "openai", "--base-url", base_url,
            "--model", "sim-vlm", "--cache", str(cache), "--score", "logprob", "--timeout", "2", *options]


@contextmanager
def cli_adapter(base_url: str, cache: Path, key: Optional[str], *options: str):
    """``multishap adapter openai`` as a process; yields its start-up line and address, then its output
    and exit code."""
    log = cache.with_suffix(".log")
    with log.open("w") as stderr:
        proc = subprocess.Popen(cli_args(base_url, cache, *options), env=cli_env(key), stdout=subprocess.PIPE,
                                stderr=stderr, text=True)
    run = {"line": proc.stdout.readline()}
    run["address"] = run["line"].split(" on ")[1].split(",")[0]
    try:
        yield run
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        run.update(out=run["line"] + out, err=log.read_text(), code=proc.returncode)
