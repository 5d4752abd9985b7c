"""F_syn and the unimodal metrics for every built-in explainer on synthetic instances.

Over instances mixing redundant, synergistic and mixed games (4x4 patches x 8 tokens), for
every explainer: mean +- std of F_syn (published, clipped), of the normalised unclipped
F_syn and of the visual and textual SRG; the Kendall tau between the explainer rankings by
mean visual SRG and by mean textual SRG (the paper's "evaluation collapse": -0.06); the
Spearman rho between F_syn and the exact macro-game SII area over instances x explainers
(the paper: 0.92, unclipped); and evaluations and wall time per instance of F_syn versus
the exact macro game when every coalition costs the same (``--cost-ms``, a stand-in for a
model's forward pass; the paper: 281 s -> 11 s, 24x).

Usage: python bench/faithfulness.py [--per-family 17] [--cost-ms 1.0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import kendalltau, spearmanr

from multishap.service.math.games import make_game
from multishap.service.math.estimators import estimate_interactions
from multishap.service.math.attributions import (
    MULTISHAP_MODES,
    multishap_scores,
    oracle_scores,
    random_scores,
    shapley_scores,
)
from multishap.service.math.faithfulness import macro_game_sii, synergistic_faithfulness, unimodal_faithfulness

M, N = 16, 8
FAMILIES = ("redundant", "synergistic", "mixed")
PHI_BUDGET = 4_000


class CostlyGame:
    """Wraps a game so that each coalition costs ``cost_ms`` of wall time, like a model."""

    def __init__(self, game, cost_ms: float) -> None:
        self.game, self.cost = game, cost_ms / 1000.0

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        time.sleep(self.cost * len(masks))
        return self.game(masks)


def explanations(game, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    est = estimate_interactions(game, M, N, budget=PHI_BUDGET, seed=seed)
    out = {"random": random_scores(M, N, seed)}
    for mode in MULTISHAP_MODES:
        out[f"multishap-{mode}"] = multishap_scores(est.phi, mode)
    out["shapley"] = shapley_scores(est.shapley, M)
    out["oracle"] = oracle_scores(game)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-family", type=int, default=17, help="instances per game family")
    parser.add_argument("--cost-ms", type=float, default=1.0, help="wall time per coalition")
    parser.add_argument("--timed", type=int, default=3, help="instances timed with --cost-ms")
    args = parser.parse_args()

    rows = []
    for family in FAMILIES:
        for seed in range(args.per_family):
            game = make_game(family, M, N, seed)
            for name, (a, b) in explanations(game, seed).items():
                fs = synergistic_faithfulness(game, M, N, a, b)
                uf = unimodal_faithfulness(game, M, N, a, b)
                ms = macro_game_sii(game, M, N, a, b, seed=seed)
                rows.append((family, name, fs.f_syn, fs.f_syn_unclipped, uf.visual.srg, uf.text.srg, ms.auc, fs.evaluations, ms.evaluations))
    names = list(dict.fromkeys(r[1] for r in rows))
    data = {name: np.array([r[2:] for r in rows if r[1] == name]) for name in names}
    instances = len(FAMILIES) * args.per_family

    print(f"{instances} instances ({', '.join(FAMILIES)}; {M} patches x {N} tokens), 10 steps, eps 0.05\n")
    print("| explainer | F_syn | F_syn unclipped | visual SRG | textual SRG | macro SII area |")
    print("|---|---|---|---|---|---|")
    for name in names:
        d = data[name]
        cells = " | ".join(f"{d[:, k].mean():+.3f} ± {d[:, k].std():.3f}" for k in range(5))
        print(f"| {name} | {cells} |")

    print()
    print("| explainer | " + " | ".join(f"F_syn, {f}" for f in FAMILIES) + " |")
    print("|---|" + "---|" * len(FAMILIES))
    for name in names:
        cells = [np.mean([r[2] for r in rows if r[0] == f and r[1] == name]) for f in FAMILIES]
        print(f"| {name} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")

    visual = [data[n][:, 2].mean() for n in names]
    textual = [data[n][:, 3].mean() for n in names]
    tau = kendalltau(visual, textual).statistic
    every = np.concatenate([data[n] for n in names])
    rho_unclipped = spearmanr(every[:, 1], every[:, 4]).statistic
    rho_clipped = spearmanr(every[:, 0], every[:, 4]).statistic
    print()
    print("| statistic | ours | paper |")
    print("|---|---|---|")
    print(f"| Kendall tau, explainer ranking by visual vs textual SRG | {tau:+.2f} | -0.06 |")
    print(f"| Spearman rho, F_syn unclipped vs macro SII area ({len(every)} rows) | {rho_unclipped:.2f} | 0.92 |")
    print(f"| Spearman rho, F_syn (clipped) vs macro SII area | {rho_clipped:.2f} | - |")

    game = CostlyGame(make_game("mixed", M, N, 0), args.cost_ms)
    a, b = random_scores(M, N, 0)
    timings = []
    for seed in range(args.timed):
        start = time.perf_counter()
        fs = synergistic_faithfulness(game, M, N, a, b)
        t_fsyn = time.perf_counter() - start
        start = time.perf_counter()
        ms = macro_game_sii(game, M, N, a, b, seed=seed)
        timings.append((fs.evaluations, t_fsyn, ms.evaluations, time.perf_counter() - start))
    ev_f, t_f, ev_m, t_m = np.mean(timings, axis=0)
    print()
    print(f"| cost per instance ({args.cost_ms:g} ms per coalition) | F_syn | exact macro game | ratio |")
    print("|---|---|---|---|")
    print(f"| distinct coalitions | {ev_f:.0f} | {ev_m:.0f} | {ev_m / ev_f:.0f}× |")
    print(f"| wall time | {t_f:.3f} s | {t_m:.3f} s | {t_m / t_f:.0f}× |")


if __name__ == "__main__":
    main()
