"""What an audit of a paid endpoint costs: adapter throughput, and requests per explanation.

Part 1, throughput: the OpenAI adapter (real ``openai`` client, real HTTP) against the
simulated endpoint (``multishap.adapters.openai.simulator``) with a given latency per
request, rate limit, concurrency cap and share of injected faults; the skimage photo
``chelsea`` is rendered as a PNG for every request. Reports requests per second next to
the ceiling min(rpm / 60, concurrency / latency).

Part 2, requests per explanation at equal accuracy: every distinct coalition is one paid
request, so the estimator's evaluations are the bill. For Möbius games with closed-form
SII, the budget each estimator needs to bring the relative Frobenius error of Phi below
a target (log-log interpolation over budgets, mean error over seeds), and what that costs
at an example price; then one run per estimator through the simulator, counting the
requests the server received.

Usage: python bench/openai.py [--quick]
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

# This script is named like the `openai` package it exercises: keep its own folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np
from PIL import Image
from skimage import data

from multishap.adapters.backend import ScoreCall
from multishap.adapters.instances import decode_instance
from multishap.adapters.openai import (EndpointConfig, OpenAIBackend, OpenAIOptions, RetryPolicy,
                                       ScoringOptions)
from multishap.adapters.openai.backend import estimate_prompt_tokens
from multishap.adapters.openai.render import DEFAULT_TEMPLATE, sent_size
from multishap.adapters.openai.simulator import FaultPlan, SimulatedEndpoint, SimulatedTask
from multishap.service.math.games import make_game
from multishap.service.math.estimators import estimate_interactions
from multishap.v1 import common_pb2

TEXT = "is the cat on the sofa sleeping peacefully"
EXAMPLE_PRICE = 2.50  # per million input tokens: an example figure, not any provider's price


def photo() -> bytes:
    out = io.BytesIO()
    Image.fromarray(data.chelsea()).save(out, format="PNG")
    return out.getvalue()


def setup(image: bytes, rows: int, cols: int, family: str, seed: int, **sim_options) -> SimulatedEndpoint:
    """A simulated endpoint for the instance, answering with the game's value shifted below 0."""
    pixels = np.asarray(Image.open(io.BytesIO(image)).convert("RGB"))
    n = len(TEXT.split())
    game = make_game(family, rows * cols, n, seed)
    shift = sum(abs(c) for _, c in getattr(game, "terms", ())) + 1.0
    task = SimulatedTask(pixels, TEXT, "yes", rows, cols)
    return SimulatedEndpoint(task, game, lambda v: v - shift, api_key="sk-bench", **sim_options)


def _serve(conn, image: bytes, rows: int, cols: int, family: str, seed: int, sim_options: dict) -> None:
    sim = setup(image, rows, cols, family, seed, **sim_options)
    conn.send(sim.base_url)
    conn.recv()
    conn.send(sum(sim.traffic.received.values()))
    sim.close()


def endpoint_process(image: bytes, rows: int, cols: int, family: str, seed: int, **sim_options):
    """The simulated endpoint in a process of its own, as a real one would be: (base URL, stop).

    ``stop()`` shuts it down and returns how many requests it received.
    """
    ours, theirs = multiprocessing.Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=_serve, args=(theirs, image, rows, cols, family, seed, sim_options), daemon=True)
    process.start()
    base_url = ours.recv()

    def stop() -> int:
        ours.send("stop")
        received = ours.recv()
        process.join()
        return received

    return base_url, stop


def backend_for(base_url: str, cache: Path, concurrency: int, rpm, timeout: float = 10.0) -> OpenAIBackend:
    endpoint = EndpointConfig(base_url, "sim", "sk-bench", timeout=timeout, concurrency=concurrency, rpm=rpm,
                              retry=RetryPolicy(initial_wait=0.05, max_wait=1.0))
    return OpenAIBackend(OpenAIOptions(endpoint=endpoint, scoring=ScoringOptions(score="logprob"), cache_path=cache))


def prepared(backend: OpenAIBackend, image: bytes, rows: int, cols: int):
    inst = common_pb2.Instance(image=image, text=TEXT, target="yes", grid=common_pb2.Grid(rows=rows, cols=cols))
    return backend.prepare(decode_instance(inst, 10**8))


def throughput(image: bytes, quick: bool) -> None:
    configs = [  # (latency s, rpm, concurrency, fault rate)
        (0.0, None, 8, 0.0), (0.2, None, 8, 0.0), (0.2, None, 32, 0.0), (1.0, None, 32, 0.0),
        (0.2, 600, 8, 0.0), (0.2, 3000, 32, 0.0), (0.2, None, 32, 0.1),
    ]
    if quick:
        configs = configs[:2]
    rows, cols = 4, 4
    n_players = rows * cols + len(TEXT.split())
    print("## Throughput against the simulated endpoint (chelsea, 451x300 PNG per request)\n")
    print("| latency | rpm limit | concurrency | faults | requests | seconds | requests/s | ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for latency, rpm, concurrency, faults in configs:
        ceiling = min(rpm / 60 if rpm else np.inf, concurrency / latency if latency else np.inf)
        count = int(min(400, max(40, 8 * ceiling))) if np.isfinite(ceiling) else 400
        if quick:
            count = 40
        masks = np.unique(rng.random((count * 2, n_players)) < 0.5, axis=0)[:count]
        plan = FaultPlan(rate=faults, kinds=("429", "500", "drop"), retry_after_ms=50)
        with tempfile.TemporaryDirectory() as tmp:
            base_url, stop = endpoint_process(image, rows, cols, "mixed", 0, latency=latency, faults=plan)
            backend = backend_for(base_url, Path(tmp) / "c.sqlite", concurrency, rpm)
            prep = prepared(backend, image, rows, cols)
            start = time.perf_counter()
            result = backend.score(prep, masks, ScoreCall())
            seconds = time.perf_counter() - start
            backend.close()
            stop()
        assert result.usage.requests == len(masks)
        print(f"| {latency:g} s | {rpm or '—'} | {concurrency} | {faults:.0%} | {len(masks)} | {seconds:.2f} | "
              f"{len(masks) / seconds:.1f} | {'—' if not np.isfinite(ceiling) else f'{ceiling:.1f}'} |", flush=True)


def needed_budget(budgets: list[int], errors: list[float], target: float) -> float:
    """Budget at which the error curve crosses ``target`` (log-log interpolation; inf if never).

    An infinite error marks a budget too small for one step of the method.
    """
    reached = [k for k, e in enumerate(errors) if e <= target]
    if not reached:
        return float("inf")
    k = reached[0]
    if k == 0 or not np.isfinite(errors[k - 1]):
        return float(budgets[k])
    le, lb = np.log(errors), np.log(budgets)
    frac = (np.log(target) - le[k - 1]) / (le[k] - le[k - 1])
    return float(np.exp(lb[k - 1] + frac * (lb[k] - lb[k - 1])))


def requests_per_explanation(image: bytes, quick: bool) -> None:
    settings = [(4, 4, "mixed"), (4, 4, "unanimity-low"), (4, 4, "unanimity-high"), (7, 7, "unanimity-low")]
    budgets = [250, 500, 1000, 2000, 4000, 8000, 16000, 32000]
    seeds, targets = 3, (0.3, 0.1)
    if quick:
        settings, budgets, seeds = settings[:1], budgets[:3], 1
    n = len(TEXT.split())
    h, w = sent_size(*data.chelsea().shape[:2], 512)
    tokens = estimate_prompt_tokens(DEFAULT_TEMPLATE.replace("{text}", TEXT), h, w, "auto") + 1
    print(f"\n## Requests per explanation at equal accuracy ({n} words; ~{tokens} tokens per request, "
          f"cost at an example {EXAMPLE_PRICE:.2f} per million tokens)\n")
    print("| game | grid | estimator | " + " | ".join(f"error @{b:,}" for b in budgets)
          + " | " + " | ".join(f"requests for ≤{t:g} | cost for ≤{t:g}" for t in targets) + " |")
    print("|" + "---|" * (3 + len(budgets) + 2 * len(targets)))
    for rows, cols, family in settings:
        m = rows * cols
        games = [make_game(family, m, n, seed) for seed in range(seeds)]
        truths = [g.interactions("SII") for g in games]
        for method, label in (("multishap", "Alg. 1 (SII)"), ("kernel", "kernel (auto)")):
            errors = []
            for budget in budgets:
                try:
                    errs = [np.linalg.norm(estimate_interactions(g, m, n, method=method, budget=budget, seed=s).phi
                                           - t) / np.linalg.norm(t) for s, (g, t) in enumerate(zip(games, truths))]
                except ValueError:  # the budget is below one step of the method
                    errs = [float("inf")]
                errors.append(float(np.mean(errs)))
            cells = []
            for target in targets:
                need = needed_budget(budgets, errors, target)
                cells.append(f"> {budgets[-1]:,}" if not np.isfinite(need) else f"{need:,.0f}")
                cells.append("—" if not np.isfinite(need) else f"{need * tokens * EXAMPLE_PRICE / 1e6:.2f}")
            print(f"| {family} | {rows}×{cols} | {label} | " + " | ".join(f"{e:.3f}" for e in errors) + " | "
                  + " | ".join(cells) + " |", flush=True)

    rows, cols, budget = 4, 4, 500 if quick else 2000
    print(f"\nThrough the adapter and the simulated endpoint (mixed game, {rows}×{cols}, budget {budget}):\n")
    print("| estimator | evaluations | requests the server received | paid requests in usage | seconds |")
    print("|---|---|---|---|---|")
    for method in ("multishap", "kernel"):
        with tempfile.TemporaryDirectory() as tmp:
            base_url, stop = endpoint_process(image, rows, cols, "mixed", 0)
            backend = backend_for(base_url, Path(tmp) / "c.sqlite", 16, None)
            prep = prepared(backend, image, rows, cols)
            paid = [0]

            def value_fn(masks: np.ndarray) -> np.ndarray:
                result = backend.score(prep, masks, ScoreCall())
                paid[0] += result.usage.requests
                return result.values

            start = time.perf_counter()
            est = estimate_interactions(value_fn, rows * cols, n, method=method, budget=budget, seed=0)
            seconds = time.perf_counter() - start
            backend.close()
            received = stop()
        print(f"| {method} | {est.evaluations} | {received} | {paid[0]} | {seconds:.1f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small subset, for a smoke test")
    args = parser.parse_args()
    image = photo()
    throughput(image, args.quick)
    requests_per_explanation(image, args.quick)


if __name__ == "__main__":
    main()
