"""Audit throughput: instances/s of ``run_audit`` on the local thread pool vs on Ray, at the same concurrency.

A synthetic adapter that sleeps ``--delay`` seconds per Score request (a stand-in for model time) and the
explainer run in this process on loopback; one target; every instance a different game (family and seed
parameters), 3x3 patches x 6 words, ``--budget`` coalitions in requests of at most 64. Ray is a local cluster
of ``--concurrency`` CPUs started before the clock (its start-up is reported apart). Each engine first audits
``--concurrency`` warm-up instances into a scratch directory, so Ray's workers exist; then timed audits of
``--instances`` instances into fresh directories, the engines taking turns, best of ``--rounds`` each. The
ratio is instances/s over the local engine's. Prints one markdown table.

Usage: python bench/engines.py [--instances 64] [--concurrency 8] [--delay 0.005] [--budget 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # Ray's start-up forks while this process serves gRPC: a notice

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from images import png  # noqa: E402  (tests/images.py: small in-memory PNGs)
from multishap.adapters.server import serve_adapter  # noqa: E402
from multishap.client.audit import run_audit  # noqa: E402
from multishap.client.engines import ENGINES  # noqa: E402
from multishap.service.explainer import serve_explainer  # noqa: E402
from multishap.service.math.games import FAMILIES  # noqa: E402
from multishap.service.rpc.config import ExplainerConfig, Limits, TargetConfig  # noqa: E402
from servers import SlowBackend  # noqa: E402

TEXT = "a cat lying on a soft couch"


def records(count: int, first: int) -> list[dict]:
    """``count`` instances, each its own game, numbered from ``first``."""
    return [{"id": f"i{k}", "image": png(seed=k), "text": TEXT, "grid": (3, 3),
             "parameters": {"family": FAMILIES[k % len(FAMILIES)], "seed": str(k)}}
            for k in range(first, first + count)]


def audit_seconds(engine: str, address: str, args: argparse.Namespace, out: Path, first: int, count: int) -> float:
    """Seconds of one audit of ``count`` new instances on ``engine`` into ``out``."""
    start = time.perf_counter()
    report = run_audit(records(count, first), out=out, address=address, targets=["syn"], engine=engine,
                       concurrency=args.concurrency, max_in_flight_per_target=args.concurrency, progress=False,
                       budget=args.budget, seed=0)
    seconds = time.perf_counter() - start
    if report.failures or len(report.rows) != count:
        raise SystemExit(f"the {engine} audit failed: {report.failures[:1]}")
    return seconds


def best_seconds(address: str, args: argparse.Namespace, scratch: Path) -> dict[str, float]:
    """Each engine's best audit, in interleaved rounds after a warm-up each, so that other load on the machine
    weighs on both engines alike rather than on the one it hit."""
    for engine in ENGINES:
        audit_seconds(engine, address, args, scratch / f"{engine}-warm", 10_000, args.concurrency)
    best = dict.fromkeys(ENGINES, float("inf"))
    for round_ in range(args.rounds):
        for engine in ENGINES:
            seconds = audit_seconds(engine, address, args, scratch / f"{engine}-{round_}", 0, args.instances)
            best[engine] = min(best[engine], seconds)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=64, help="instances of the timed audit")
    parser.add_argument("--concurrency", type=int, default=8, help="explanations in flight, both engines")
    parser.add_argument("--delay", type=float, default=0.005, help="adapter seconds per Score request")
    parser.add_argument("--budget", type=int, default=256, help="coalitions per explanation")
    parser.add_argument("--rounds", type=int, default=3, help="timed audits per engine (the best is kept)")
    args = parser.parse_args()

    import ray

    adapter, _ = serve_adapter(SlowBackend(args.delay), metrics_port=None)
    config = ExplainerConfig(targets={"syn": TargetConfig("syn", (adapter.address,), max_batch=64)},
                             limits=Limits(max_concurrent_explanations=args.concurrency))
    explainer, servicer = serve_explainer(config)
    try:
        start = time.perf_counter()
        ray.init(num_cpus=args.concurrency, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
        ray_start = time.perf_counter() - start
        try:
            with tempfile.TemporaryDirectory() as scratch:
                best = best_seconds(explainer.address, args, Path(scratch))
        finally:
            ray.shutdown()
    finally:
        explainer.stop(None)
        servicer.close()
        adapter.stop(None)

    print(f"{args.instances} instances, concurrency {args.concurrency}, {args.delay * 1000:g} ms per Score request, "
          f"budget {args.budget}, {os.cpu_count()} CPUs; Ray's start-up ({ray_start:.1f} s) not counted\n")
    print("| engine | instances | seconds | instances/s | ratio |")
    print("|---|---|---|---|---|")
    for engine, label in zip(ENGINES, ("local (threads)", "ray (tasks)")):
        seconds = best[engine]
        print(f"| {label} | {args.instances} | {seconds:.2f} | {args.instances / seconds:.1f} | "
              f"{best['local'] / seconds:.2f} |")


if __name__ == "__main__":
    main()
