"""Real servers on loopback for tests: synthetic adapters (optionally slow or faulty) and an explainer."""

from __future__ import annotations

import time
from contextlib import contextmanager

import grpc
import numpy as np

from images import png
from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.config import ExplainerConfig, Limits, ServerSettings, TargetConfig
from multishap.service.explainer import serve_explainer
from multishap.v1 import common_pb2, explainer_pb2_grpc

TEXT = "a cat lying on a couch"


class SlowBackend(SyntheticBackend):
    """The synthetic game, taking ``delay`` seconds per Score request (a stand-in for a model)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def score(self, instance, masks):
        time.sleep(self.delay)
        return super().score(instance, masks)


class NaNBackend(SyntheticBackend):
    """Returns NaN for every tenth coalition."""

    def score(self, instance, masks):
        values = super().score(instance, masks).copy()
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
def explainer(targets: dict[str, list[str]], limits: Limits = Limits(), server: ServerSettings = ServerSettings(),
              **target_options):
    config = ExplainerConfig(
        targets={name: TargetConfig(name, tuple(addrs), **target_options) for name, addrs in targets.items()},
        limits=limits, server=server,
    )
    running, servicer = serve_explainer(config)
    channel = grpc.insecure_channel(running.address)
    try:
        yield running, explainer_pb2_grpc.ExplainerStub(channel), servicer
    finally:
        channel.close()
        running.stop(None)
        servicer.close()
