"""Accuracy per evaluation of every interaction estimator, against closed-form or exact truth.

For each game family at N = 16 (10 patches + 6 tokens) and for unanimity games at
7x7 patches x 10 tokens: relative Frobenius error of the cross-modal Phi against truth, at
budgets 1k / 4k / 16k / 64k, mean over seeds (game and estimator seed both vary), for our
estimators and for shapiq's KernelSHAP-IQ (with pairing) and SVARM-IQ as outside
references. Then, per family, how many times fewer evaluations ``auto`` needs than
Algorithm 1 (SII-correct) for the same error (log-log interpolation of Algorithm 1's
curve). Prints one markdown table; ``--quick`` runs a small subset for smoke tests.

Usage: python bench/estimators.py [--seeds 5] [--quick] [--no-shapiq]
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Callable, Optional

import numpy as np

from multishap.service.math.games import make_game
from multishap.service.math.estimators import estimate_interactions
from multishap.service.math.estimators.exact import exact_estimate

BUDGETS = (1_000, 4_000, 16_000, 64_000)
SMALL = (10, 6)
LARGE = (49, 10)
SMALL_FAMILIES = ("unanimity-low", "unanimity-high", "redundant", "synergistic", "mixed", "mlp", "bilinear")
LARGE_FAMILIES = ("unanimity-low", "unanimity-high")
# SVARM-IQ takes minutes per call at N = 59 (measured: ~170 s at 4k), so it is run at N = 16 only.
SVARM_MAX_PLAYERS = 20


def truth(game, m: int, n: int) -> np.ndarray:
    closed = game.interactions("SII")
    return closed if closed is not None else exact_estimate(game, m, n).phi


def ours(method: str) -> Callable:
    def run(game, m, n, budget, seed):
        return estimate_interactions(game, m, n, method=method, budget=budget, seed=seed).phi

    return run


def shapiq_runner(name: str) -> Optional[Callable]:
    try:
        from shapiq.approximator import SVARMIQ, KernelSHAPIQ
    except ImportError:
        return None
    cls = {"KernelSHAP-IQ": KernelSHAPIQ, "SVARM-IQ": SVARMIQ}[name]

    def run(game, m, n, budget, seed):
        approx = cls(n=m + n, max_order=2, index="SII", pairing_trick=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = approx.approximate(budget=budget, game=game)
        return values.get_n_order_values(2)[:m, m:]

    return run


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def speedup(budgets: tuple[int, ...], alg1: list[float], auto: list[float]) -> list[float]:
    """For each budget, (Alg. 1 budget reaching auto's error) / budget, log-log interpolated."""
    log_b, log_e = np.log(budgets), np.log(alg1)
    out = []
    for b, err in zip(budgets, auto):
        if err <= 1e-9:
            out.append(float("inf"))
            continue
        # Alg. 1's error falls with budget: interpolate log budget as a function of log error,
        # extrapolating with the slope of the last segment beyond the measured range.
        order = np.argsort(log_e)
        le, lb = log_e[order], log_b[order]
        if np.log(err) < le[0]:
            slope = (lb[1] - lb[0]) / (le[1] - le[0])
            needed = lb[0] + slope * (np.log(err) - le[0])
        elif np.log(err) > le[-1]:
            slope = (lb[-1] - lb[-2]) / (le[-1] - le[-2])
            needed = lb[-1] + slope * (np.log(err) - le[-1])
        else:
            needed = np.interp(np.log(err), le, lb)
        out.append(float(np.exp(needed) / b))
    return out


def _versus(ratio: float, auto_error: float) -> str:
    """A cell of 'auto error / best shapiq error'."""
    if np.isnan(ratio):
        return "both exact" if auto_error <= 1e-9 else "n/a"
    return f"{ratio:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small subset, for a smoke test")
    parser.add_argument("--no-shapiq", action="store_true")
    args = parser.parse_args()

    budgets = BUDGETS[:2] if args.quick else BUDGETS
    settings = [(SMALL, f) for f in (SMALL_FAMILIES[:2] if args.quick else SMALL_FAMILIES)]
    if not args.quick:
        settings += [(LARGE, f) for f in LARGE_FAMILIES]
    runners: dict[str, Optional[Callable]] = {
        "multishap (Alg. 1, SII)": ours("multishap"),
        "kernel": ours("kernel"),
        "auto": ours("auto"),
    }
    if not args.no_shapiq:
        runners["shapiq KernelSHAP-IQ"] = shapiq_runner("KernelSHAP-IQ")
        runners["shapiq SVARM-IQ"] = shapiq_runner("SVARM-IQ")

    header = "| game | m×n | estimator | " + " | ".join(f"{b // 1000}k" for b in budgets) + " | s/call |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    summary = []
    curves_auto: dict = {}
    for (m, n), family in settings:
        games = [make_game(family, m, n, seed) for seed in range(args.seeds)]
        truths = [truth(g, m, n) for g in games]
        curves = {}
        for name, run in runners.items():
            if run is None or ("SVARM" in name and m + n > SVARM_MAX_PLAYERS):
                continue
            errors, start = [], time.perf_counter()
            for budget in budgets:
                errs = [relative_error(run(g, m, n, budget, s), t) for s, (g, t) in enumerate(zip(games, truths))]
                errors.append(float(np.mean(errs)))
            per_call = (time.perf_counter() - start) / (len(budgets) * args.seeds)
            curves[name] = errors
            cells = " | ".join(f"{e:.3f}" for e in errors)
            print(f"| {family} | {m}×{n} | {name} | {cells} | {per_call:.2f} |", flush=True)
        ratios = speedup(budgets, curves["multishap (Alg. 1, SII)"], curves["auto"])
        best_ref = [
            min(curves[k][i] for k in curves if k.startswith("shapiq")) if any(k.startswith("shapiq") for k in curves) else float("nan")
            for i in range(len(budgets))
        ]
        vs_ref = [float("nan") if np.isnan(r) or (r <= 1e-9 and a <= 1e-9) else a / max(r, 1e-12)
                  for a, r in zip(curves["auto"], best_ref)]
        summary.append((family, m, n, ratios, vs_ref))
        curves_auto[family, m, n] = curves["auto"]

    print()
    print("| game | m×n | Alg. 1 evaluations ÷ auto's, same error: " + " | ".join(f"{b // 1000}k" for b in budgets)
          + " | auto error ÷ best shapiq: " + " | ".join(f"{b // 1000}k" for b in budgets) + " |")
    print("|" + "---|" * (2 + 2 * len(budgets)))
    for family, m, n, ratios, vs_ref in summary:
        print(f"| {family} | {m}×{n} | " + " | ".join("exact" if r > 1e6 else f"{r:.1f}×" for r in ratios) + " | "
              + " | ".join(_versus(r, a) for r, a in zip(vs_ref, curves_auto[family, m, n])) + " |")


if __name__ == "__main__":
    main()
