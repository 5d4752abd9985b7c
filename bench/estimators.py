"""Accuracy per evaluation of every interaction estimator, against closed-form or exact truth.

Games: every family at N = 16 (10 patches + 6 tokens); unanimity games at 7x7 patches x 10
tokens and at 14x14 x 16 (sparse: orders <= 4, dense: orders 4..8); and the real zero-shot
dual encoder on three photos (3x4 grid, tabulated by bench/real_games.py; a scene whose table
is not built yet is skipped). For each: relative Frobenius error of the cross-modal Phi
against truth at budgets 1k / 4k / 16k / 40k, mean over seeds (game and estimator seed both
vary; a real game varies the estimator seed only), for our estimators and for shapiq's
KernelSHAP-IQ (with pairing) and SVARM-IQ as outside references; the estimator's own CPU time
per call (the game's time taken out); and the calibration of the standard errors, the RMS of
(estimate - truth) / stderr over entries and seeds (an entry reported exact and right is left
out; ideal 1). Then, per game, how many times fewer evaluations ``auto`` needs than
Algorithm 1 (SII-correct) for the same error (log-log interpolation of Algorithm 1's curve),
and the share of Algorithm 1's 40k budget auto needs to match its 40k error. Prints markdown
tables; ``--quick`` runs a small subset for smoke tests.

Usage: python bench/estimators.py [--seeds 5] [--quick] [--no-shapiq] [--games small,large,huge,real]
       [--budgets 1000,4000] [--methods kernel,controlled]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from multishap.service.math.games import make_game
from multishap.service.math.estimators import ESTIMATORS, estimate_interactions
from multishap.service.math.estimators.exact import exact_estimate
from multishap.service.math.estimators.registry import choose_method

sys.path.insert(0, str(Path(__file__).parent))
import real_games  # noqa: E402

BUDGETS = (1_000, 4_000, 16_000, 40_000)
SMALL = (10, 6)
LARGE = (49, 10)
HUGE = (196, 16)
SMALL_FAMILIES = ("unanimity-low", "unanimity-high", "redundant", "synergistic", "mixed", "mlp", "bilinear")
LARGE_FAMILIES = ("unanimity-low", "unanimity-high")
GAME_SETS = ("small", "large", "huge", "real")
# SVARM-IQ takes minutes per call at N = 59 (measured: ~170 s at 4k), so it is run at N = 16 only.
SVARM_MAX_PLAYERS = 20


def truth(game, m: int, n: int) -> np.ndarray:
    closed = game.interactions("SII")
    return closed if closed is not None else exact_estimate(game, m, n).phi


class TimedGame:
    """A game that adds up the time spent scoring, so an estimator's own CPU time can be told apart."""

    def __init__(self, game) -> None:
        self.game = game
        self.seconds = 0.0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        start = time.process_time()
        out = self.game(masks)
        self.seconds += time.process_time() - start
        return out


def ours(method: str) -> Callable:
    """Runner returning (phi, stderr, estimator CPU seconds), or None below the method's minimum budget."""
    def run(game, m, n, budget, seed):
        name = choose_method(m, n, budget) if method == "auto" else method
        if name == "exact" or budget < ESTIMATORS[name].min_budget(m, n):
            return None
        timed = TimedGame(game)
        start = time.process_time()
        est = estimate_interactions(timed, m, n, method=method, budget=budget, seed=seed)
        return est.phi, est.stderr, time.process_time() - start - timed.seconds

    return run


def shapiq_runner(name: str) -> Optional[Callable]:
    try:
        from shapiq.approximator import SVARMIQ, KernelSHAPIQ
    except ImportError:
        return None
    cls = {"KernelSHAP-IQ": KernelSHAPIQ, "SVARM-IQ": SVARMIQ}[name]

    def run(game, m, n, budget, seed):
        approx = cls(n=m + n, max_order=2, index="SII", pairing_trick=True, random_state=seed)
        start = time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = approx.approximate(budget=budget, game=game)
        return values.get_n_order_values(2)[:m, m:], None, time.process_time() - start

    return run


def relative_error(estimate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(estimate - reference) / np.linalg.norm(reference))


def standardised(estimate: np.ndarray, stderr: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """(estimate - truth) / stderr per entry; entries with infinite stderr, or reported exact
    (stderr 0) and right, are left out; one reported exact and wrong is infinite."""
    error = estimate - reference
    keep = np.isfinite(stderr) & ~((stderr == 0) & (np.abs(error) <= 1e-12))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(error[keep]) / stderr[keep]


def budget_for(budgets: tuple[int, ...], curve: list[float], error: float) -> float:
    """Budget at which an error curve falling with budget reaches ``error``: log budget interpolated
    as a function of log error, extrapolated with the slope of the nearest segment."""
    if error <= 1e-9:
        return 0.0
    pairs = [(np.log(e), np.log(b)) for b, e in zip(budgets, curve) if np.isfinite(e) and e > 1e-9]
    if len(pairs) < 2:
        return float("nan")
    le, lb = (np.array(v) for v in zip(*sorted(pairs)))
    x = np.log(error)
    if x < le[0]:
        needed = lb[0] + (lb[1] - lb[0]) / (le[1] - le[0]) * (x - le[0])
    elif x > le[-1]:
        needed = lb[-1] + (lb[-1] - lb[-2]) / (le[-1] - le[-2]) * (x - le[-1])
    else:
        needed = np.interp(x, le, lb)
    return float(np.exp(needed))


def speedup(budgets: tuple[int, ...], alg1: list[float], auto: list[float]) -> list[float]:
    """For each budget, (Alg. 1 budget reaching auto's error) / budget."""
    return [float("nan") if np.isnan(err) else budget_for(budgets, alg1, err) / b if err > 1e-9 else float("inf")
            for b, err in zip(budgets, auto)]


def _games(which: str, m: int, n: int, family: str, seeds: int) -> list:
    if which == "real":
        game = real_games.load(family, build_missing=False)
        return [game] * seeds
    return [make_game(family, m, n, seed) for seed in range(seeds)]


def settings(quick: bool, sets: tuple[str, ...]) -> list[tuple[str, int, int, str]]:
    """(game set, m, n, family or scene) for every game the run covers."""
    if quick:
        return [("small", *SMALL, f) for f in SMALL_FAMILIES[:2]]
    out = []
    if "small" in sets:
        out += [("small", *SMALL, f) for f in SMALL_FAMILIES]
    if "large" in sets:
        out += [("large", *LARGE, f) for f in LARGE_FAMILIES]
    if "huge" in sets:
        out += [("huge", *HUGE, f) for f in LARGE_FAMILIES]
    if "real" in sets:
        for scene in real_games.SCENES:
            try:
                game = real_games.load(scene, build_missing=False)
            except (OSError, ValueError, zipfile.BadZipFile) as exc:  # missing, or still being written (a partial archive)
                print(f"(scene {scene!r} skipped: {exc})", file=sys.stderr)
                continue
            out.append(("real", game.m, game.n, scene))
    return out


def _cells(values: list[float], fmt: str) -> str:
    return " | ".join("—" if v is None or np.isnan(v) else fmt.format(v) for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small subset, for a smoke test")
    parser.add_argument("--no-shapiq", action="store_true")
    parser.add_argument("--games", default=",".join(GAME_SETS), help="comma-separated subset of " + ", ".join(GAME_SETS))
    parser.add_argument("--budgets", default=None, help="comma-separated budgets (default 1k,4k,16k,40k)")
    parser.add_argument("--methods", default=None, help="comma-separated subset of our estimators' rows "
                        "(Algorithm 1's and auto's always run: the ratios need them)")
    args = parser.parse_args()

    budgets = tuple(int(b) for b in args.budgets.split(",")) if args.budgets else BUDGETS
    budgets = budgets[:2] if args.quick else budgets
    runners: dict[str, Optional[Callable]] = {
        "multishap (Alg. 1, SII)": ours("multishap"),
        "kernel": ours("kernel"),
        "controlled": ours("controlled"),
        "auto": ours("auto"),
    }
    if args.methods:
        keep = {"multishap (Alg. 1, SII)", "auto", *args.methods.split(",")}
        runners = {k: v for k, v in runners.items() if k in keep}
    if not args.no_shapiq:
        runners["shapiq KernelSHAP-IQ"] = shapiq_runner("KernelSHAP-IQ")
        runners["shapiq SVARM-IQ"] = shapiq_runner("SVARM-IQ")

    labels = [f"{b // 1000}k" for b in budgets]
    header = ("| game | m×n | estimator | " + " | ".join(labels) + " | CPU s/call (" + ", ".join(labels)
              + ") | RMS z (" + ", ".join(labels) + ") |")
    print(f"auto = {choose_method(49, 10, budgets[-1])} away from enumeration; CPU = the estimator's own time per call")
    print(header)
    print("|" + "---|" * (3 + 3 * len(budgets)))
    summary = []
    for which, m, n, family in settings(args.quick, tuple(args.games.split(","))):
        games = _games(which, m, n, family, args.seeds)
        truths = [truth(g, m, n) for g in games]
        curves = {}
        for name, run in runners.items():
            if run is None or ("SVARM" in name and m + n > SVARM_MAX_PLAYERS):
                continue
            errors, cpu, calibration = [], [], []
            for budget in budgets:
                results = [run(g, m, n, budget, s) for s, g in enumerate(games)]
                if any(r is None for r in results):
                    errors.append(float("nan")), cpu.append(float("nan")), calibration.append(float("nan"))
                    continue
                errors.append(float(np.mean([relative_error(r[0], t) for r, t in zip(results, truths)])))
                cpu.append(float(np.mean([r[2] for r in results])))
                z = [standardised(r[0], r[1], t) for r, t in zip(results, truths) if r[1] is not None]
                z = np.concatenate(z) if z else np.zeros(0)
                calibration.append(float(np.sqrt(np.mean(z**2))) if len(z) else float("nan"))
            curves[name] = errors
            print(f"| {family} | {m}×{n} | {name} | {_cells(errors, '{:.3f}')} | {_cells(cpu, '{:.2f}')} | "
                  f"{_cells(calibration, '{:.2f}')} |", flush=True)
        alg1, auto = curves["multishap (Alg. 1, SII)"], curves["auto"]
        ratios = speedup(budgets, alg1, auto)
        share = budget_for(budgets, auto, alg1[-1]) / budgets[-1]
        summary.append((family, m, n, ratios, share))

    print()
    print("| game | m×n | Alg. 1 evaluations ÷ auto's, same error: " + " | ".join(labels)
          + f" | auto's budget for Alg. 1's {labels[-1]} error, ÷ {labels[-1]} |")
    print("|" + "---|" * (3 + len(budgets)))
    for family, m, n, ratios, share in summary:
        cells = " | ".join("exact" if r > 1e6 else "—" if np.isnan(r) else f"{r:.1f}×" for r in ratios)
        print(f"| {family} | {m}×{n} | {cells} | {'—' if np.isnan(share) else f'{share:.2f}'} |")


if __name__ == "__main__":
    main()
