"""Throughput of the Scorer contract: masks/s through Score on loopback vs in process.

The synthetic backend (unanimity game, 7x7 patches x 10 tokens) is called directly, then
through a real adapter server in its own process on loopback, by the explainer's own
remote value function (one Score call in flight, and four, the explainer's default);
then the same with a backend that sleeps 5 ms per batch, a stand-in for model time.
Each request carries a real photo (scikit-image's chelsea as PNG), as the contract is
stateless. Prints one markdown table.

Usage: python bench/contract.py [--seconds 1.5]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import time

import numpy as np
from PIL import Image
from skimage import data

from multishap.adapters.server import serve_adapter
from multishap.adapters.synthetic.backend import SyntheticBackend
from multishap.service.rpc.config import TargetConfig
from multishap.service.explainer.targets import CallControl, Target
from multishap.v1 import common_pb2

BATCHES = (64, 256, 1024, 4096, 8192)
GRID, WORDS = (7, 7), "a cat lying on a soft couch in the warm sun".split()


class SleepyBackend(SyntheticBackend):
    """The synthetic game plus a fixed cost per batch."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def forward(self, instance, masks):
        time.sleep(self.delay)
        return super().forward(instance, masks)


def serve(delay: float, port_out, stop) -> None:
    """Child process: run the adapter until told to stop."""
    backend = SleepyBackend(delay) if delay else SyntheticBackend()
    running, _ = serve_adapter(backend, metrics_port=None)
    port_out.send(running.port)
    stop.wait()
    running.stop(None)


def rate(fn, rows: int, seconds: float) -> float:
    """Masks per second of repeated calls of fn (each scoring ``rows`` masks)."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * rows / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    instance = common_pb2.Instance(image=buf.getvalue(), text=" ".join(WORDS), target="cat",
                                   grid=common_pb2.Grid(rows=GRID[0], cols=GRID[1]),
                                   parameters={"family": "unanimity-low", "seed": "0"})
    n_players = GRID[0] * GRID[1] + len(WORDS)
    print(f"{n_players} players, image {len(instance.image) / 1024:.0f} KiB PNG per request\n")
    print("| backend | batch | in process (masks/s) | loopback, 1 in flight | ratio | loopback, 4 in flight | ratio |")
    print("|---|---|---|---|---|---|---|")
    ctx = mp.get_context("spawn")
    for label, delay in (("synthetic", 0.0), ("synthetic + 5 ms/batch", 0.005)):
        backend = SleepyBackend(delay) if delay else SyntheticBackend()
        receive, send = ctx.Pipe(duplex=False)
        stop = ctx.Event()
        child = ctx.Process(target=serve, args=(delay, send, stop), daemon=True)
        child.start()
        port = receive.recv()
        _, servicer = serve_adapter(backend, metrics_port=None)
        prepared = servicer.prepared(instance)
        for batch in BATCHES:
            masks = np.random.default_rng(batch).random((4 * batch, n_players)) < 0.5
            local = rate(lambda: backend.forward(prepared, masks[:batch]), batch, args.seconds)
            remote = []
            for in_flight in (1, 4):
                target = Target(TargetConfig("bench", (f"127.0.0.1:{port}",), max_batch=batch, max_in_flight=in_flight))
                value_fn = target.value_function(instance, n_players, CallControl())
                rows = masks[: in_flight * batch]
                remote.append(rate(lambda: value_fn(rows), len(rows), args.seconds))
                value_fn.close()
                target.close()
            print(f"| {label} | {batch} | {local:,.0f} | {remote[0]:,.0f} | {remote[0] / local:.2f} | "
                  f"{remote[1]:,.0f} | {remote[1] / local:.2f} |", flush=True)
        stop.set()
        child.join()


if __name__ == "__main__":
    main()
