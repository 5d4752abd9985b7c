"""Throughput of the Scorer contract: masks/s through Score on loopback vs in process.

The synthetic backend (unanimity game, 7x7 patches x 10 tokens) is called directly, then
through a real adapter server in its own process on loopback, by the explainer's own
remote value function (one Score call in flight, and four, the explainer's default);
then the same with a backend that sleeps 5 ms per batch, a stand-in for model time.
The instance is a real photo (scikit-image's chelsea as PNG). The first table is the
explainer as it runs: the first request carries the instance, later ones its digest.
The second is the single-flight ratio at 5 ms batches (a sequential client, through
gRPC vs in process) with digests off (every request carries the whole image, which
the adapter hashes again) and on. Prints two markdown tables.

Usage: python bench/contract.py [--seconds 1.5] [--rounds 3] [--table all|digests]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

# One BLAS thread in this process and the adapter's (spawned children inherit it): a multithreaded
# matrix product on a busy machine costs many times a single-threaded one, and unevenly, which would
# make the game's time, not the contract's, decide the ratios. Set before numpy loads BLAS.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

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


def best_rates(calls: list[tuple[Callable[[], object], int]], seconds: float, rounds: int) -> list[float]:
    """Masks/s of each (call, rows it scores), measured in interleaved rounds keeping each one's best round,
    so that other load on the machine weighs on every column alike rather than on the one it hit."""
    best = [0.0] * len(calls)
    for _ in range(rounds):
        for k, (fn, rows) in enumerate(calls):
            best[k] = max(best[k], rate(fn, rows, seconds / rounds))
    return best


def rate(fn, rows: int, seconds: float) -> float:
    """Masks per second of repeated calls of fn (each scoring ``rows`` masks)."""
    fn()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls * rows / (time.perf_counter() - start)


class Adapter:
    """An adapter server in its own process (so the client's and the server's Python do not share a
    core's interpreter lock), and the same backend in this one, for the in-process baseline."""

    def __init__(self, delay: float) -> None:
        ctx = mp.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        self._stop = ctx.Event()
        self._child = ctx.Process(target=serve, args=(delay, send, self._stop), daemon=True)
        self._child.start()
        self.address = f"127.0.0.1:{receive.recv()}"
        self.backend = SleepyBackend(delay) if delay else SyntheticBackend()
        self._local, self._servicer = serve_adapter(self.backend, metrics_port=None)

    def local(self, instance: common_pb2.Instance) -> Callable[[np.ndarray], np.ndarray]:
        """The backend's forward pass on the prepared instance, in this process."""
        prepared = self._servicer.instances.get(instance)
        return lambda masks: self.backend.forward(prepared, masks)

    @contextmanager
    def remote(self, instance: common_pb2.Instance, num_players: int, batch: int, in_flight: int,
               send_digests: bool = True) -> Iterator[Callable[[np.ndarray], np.ndarray]]:
        """The explainer's value function over this adapter."""
        target = Target(TargetConfig("bench", (self.address,), max_batch=batch, max_in_flight=in_flight))
        value_fn = target.value_function(instance, num_players, CallControl(), send_digests=send_digests)
        try:
            yield value_fn
        finally:
            value_fn.close()
            target.close()

    def close(self) -> None:
        self._local.stop(None)
        self._stop.set()
        self._child.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds per measurement (each gets seconds / rounds); the best is kept")
    parser.add_argument("--table", choices=("all", "digests"), default="all",
                        help="both tables, or only the single-flight digests table")
    args = parser.parse_args()

    buf = io.BytesIO()
    Image.fromarray(data.chelsea()).save(buf, format="PNG")
    instance = common_pb2.Instance(image=buf.getvalue(), text=" ".join(WORDS), target="cat",
                                   grid=common_pb2.Grid(rows=GRID[0], cols=GRID[1]),
                                   parameters={"family": "unanimity-low", "seed": "0"})
    n_players = GRID[0] * GRID[1] + len(WORDS)
    print(f"{n_players} players, image {len(instance.image) / 1024:.0f} KiB PNG\n")

    def masks_for(batch: int) -> np.ndarray:
        """Four batches of random coalitions (enough for four calls in flight)."""
        return np.random.default_rng(batch).random((4 * batch, n_players)) < 0.5

    if args.table == "all":
        print("| backend | batch | in process (masks/s) | loopback, 1 in flight | ratio | loopback, 4 in flight | ratio |")
        print("|---|---|---|---|---|---|---|")
        for label, delay in (("synthetic", 0.0), ("synthetic + 5 ms/batch", 0.005)):
            adapter = Adapter(delay)
            local = adapter.local(instance)
            for batch in BATCHES:
                masks = masks_for(batch)
                with adapter.remote(instance, n_players, batch, 1) as one, \
                        adapter.remote(instance, n_players, batch, 4) as four:
                    rates = best_rates([(lambda: local(masks[:batch]), batch), (lambda: one(masks[:batch]), batch),
                                        (lambda: four(masks), len(masks))], args.seconds, args.rounds)
                print(f"| {label} | {batch} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f} | "
                      f"{rates[2]:,.0f} | {rates[2] / rates[0]:.2f} |", flush=True)
            adapter.close()
        print()

    print("Single flight, synthetic + 5 ms/batch: a sequential client through gRPC vs in process\n")
    print("| batch | in process (masks/s) | digests off | ratio | digests on | ratio |")
    print("|---|---|---|---|---|---|")
    adapter = Adapter(0.005)
    local = adapter.local(instance)
    for batch in BATCHES:
        rows = masks_for(batch)[:batch]
        with adapter.remote(instance, n_players, batch, 1, send_digests=False) as off, \
                adapter.remote(instance, n_players, batch, 1) as on:
            rates = best_rates([(lambda: local(rows), batch), (lambda: off(rows), batch), (lambda: on(rows), batch)],
                               args.seconds, args.rounds)
        print(f"| {batch} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[1] / rates[0]:.2f} | {rates[2]:,.0f} | "
              f"{rates[2] / rates[0]:.2f} |", flush=True)
    adapter.close()


if __name__ == "__main__":
    main()
