"""The `sparse` estimator against `kernel` and `multishap` on sparse and dense games, at equal budget.

Games: unanimity-low at 7x7 patches x 10 tokens (about 79 Moebius terms of order <= 4 over
59 players: sparse), unanimity-high at 7x7 x 10 (79 terms of order 4..8: sparse in the
Moebius basis but expensive to refine, so it tests the fallback), and the dense mlp and
bilinear games at 10 x 6. For each game, budget (4k, 10k, 40k) and method: relative Frobenius
error of the cross-modal SII against closed-form (unanimity) or exact (N = 16) truth, and
estimator CPU seconds (process time outside value_fn calls), means over seeds (game seed =
estimator seed). For `sparse` also how often it recovered the game exactly and how many
coalitions it scored. Then `sparse` and `kernel` at 14x14 x 16 (unanimity-low, m = 196, n = 16,
about 232 terms over 212 players).

Usage: OMP_NUM_THREADS=1 python bench/sparse.py [--seeds 5] [--quick]
"""

from __future__ import annotations

import argparse
import time
import numpy as np

from multishap.service.math.estimators.kernel import kernel_estimate
from multishap.service.math.estimators.multishap import multishap_estimate
from multishap.service.math.estimators.sparse import sparse_recover
from multishap.service.math.games import make_game

from estimators import TimedGame, relative_error, truth  # bench/estimators.py, beside this script

BUDGETS = (4_000, 10_000, 40_000)
GAMES = (("unanimity-low", 49, 10), ("unanimity-high", 49, 10), ("mlp", 10, 6), ("bilinear", 10, 6))
LARGE = ("unanimity-low", 196, 16)



def run(method: str, game, m: int, n: int, budget: int, seed: int) -> tuple[np.ndarray, float, str, int]:
    """Phi, estimator CPU seconds, the sparse outcome ("" for others) and coalitions scored."""
    timed = TimedGame(game)
    start = time.process_time()
    outcome = ""
    if method == "sparse":
        est, report = sparse_recover(timed, m, n, budget, seed)
        outcome = report.outcome
    elif method == "kernel":
        est = kernel_estimate(timed, m, n, budget, seed)
    else:
        est = multishap_estimate(timed, m, n, budget, seed, "SII", 4096, None)
    cpu = time.process_time() - start - timed.seconds
    return est.phi, cpu, outcome, est.evaluations


def cell(game_spec: tuple[str, int, int], budget: int, method: str, seeds: int) -> str:
    family, m, n = game_spec
    errors, cpus, recovered, scored = [], [], 0, []
    for seed in range(seeds):
        game = make_game(family, m, n, seed)
        phi, cpu, outcome, evaluations = run(method, game, m, n, budget, seed)
        errors.append(relative_error(phi, truth(game, m, n)))
        cpus.append(cpu)
        recovered += outcome == "recovered"
        scored.append(evaluations)
    extra = f" | {recovered}/{seeds} | {np.mean(scored):.0f}" if method == "sparse" else " | | "
    return (f"| {family} {m}x{n} | {budget} | {method} | {np.mean(errors):.2e} | {np.max(errors):.2e} "
            f"| {np.mean(cpus):.2f}{extra} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one seed, 10k only, no 14x14 game")
    args = parser.parse_args()
    seeds = 1 if args.quick else args.seeds
    budgets = (10_000,) if args.quick else BUDGETS
    print("| game | budget | method | rel. error (mean) | rel. error (max) | estimator CPU s | recovered | scored |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in GAMES:
        for budget in budgets:
            for method in ("sparse", "kernel", "multishap"):
                print(cell(spec, budget, method, seeds), flush=True)
    if not args.quick:
        for budget in BUDGETS:
            for method in ("sparse", "kernel"):
                print(cell(LARGE, budget, method, seeds), flush=True)


if __name__ == "__main__":
    main()
