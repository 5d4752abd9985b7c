"""Error per encoder pass of the `product` estimator on real-model games, against coalition samplers and FIxLIP.

On the tabulated zero-shot dual-encoder games (``bench/real_games.py``: chelsea, coffee, rocket;
3x4 patches x 10-12 tokens, exact truth from the full value table) this prints markdown tables:

1. SII: relative Frobenius error of Phi against distinct image encodes (and text encodes), for
   ``product`` (budget in encoder passes: image encode 1, text encode 1, coalition 0, the adapter's
   own prices), for ``product`` priced with text encodes at 0.1 (so that it enumerates the text
   side early, as befits a count of image encodes only) and for the coalition estimators
   ``kernel`` and ``multishap`` (budgets in coalitions, run through ``estimate_interactions``;
   their distinct image and text masks are recorded by a wrapper).
2. The headline: the image encodes (and image + text encodes) ``product`` and ``multishap`` need to
   reach the error ``kernel`` reaches at 10k coalitions (log-log interpolation along each curve),
   and the ratio to kernel's; '≤' where even the smallest design beats it. Conversely, the encodes
   the coalition estimators need to reach product's error at its three smallest designs.
3. BII: ``product`` in BII mode against a reimplementation of FIxLIP's cross-product estimator
   (Baniecki et al. 2025, ``approximate_crossmodal``): ``budget_image`` distinct image masks and
   ``budget_text`` distinct text masks drawn uniformly (p = 1/2), the full cross product scored,
   and a second-order weighted Banzhaf regression (intercept, all players, all pairs; uniform
   weights) fitted to it, whose cross-modal pair coefficients are the Banzhaf interactions (the
   top order of Faith-Banzhaf is the Banzhaf interaction index; on the full 4096 x 1024 design it
   reproduces the exact BII to 4e-12). Masks are drawn without replacement, uniformly over all
   masks (FIxLIP's sampler's border trick is left out). Equal encoder passes: text gets half,
   capped at 2^n. The regression's normal equations are assembled from the product's Kronecker
   structure.
4. Calibration of ``product``'s standard errors: RMS of (Phi_hat - Phi) / stderr over the
   sampled entries.

CPU seconds are process time of the estimator call (the tabulated game costs a gather).

Usage: python bench/product.py [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

import real_games  # noqa: E402
from estimators import relative_error  # noqa: E402  (bench/estimators.py, beside this script)

from multishap.service.math.costs import CostModel  # noqa: E402
from multishap.service.math.estimators import estimate_interactions  # noqa: E402
from multishap.service.math.estimators.product import least_budget, product_estimate  # noqa: E402
from multishap.service.math.games import TabulatedGame  # noqa: E402

DUAL = CostModel("encoder passes", image_encode=1.0, text_encode=1.0, coalition=0.0)
# The headline counts image encodes only (kernel's text masks are free there): product priced with cheap
# text encodes, so that it enumerates the text side once that takes half of the budget.
CHEAP_TEXT = CostModel("image-encode equivalents", image_encode=1.0, text_encode=0.1, coalition=0.0)
COALITION_BUDGETS = (1_000, 3_000, 10_000, 30_000, 100_000)
HEADLINE_BUDGET = 10_000
PASS_BUDGETS = (400, 700, 1_000, 1_500, 2_200, 3_200, 4_600, 6_600, 9_400)
CHEAP_TEXT_BUDGETS = (300, 500, 820, 1_100, 1_500, 2_200, 3_200, 4_500)
BII_PASSES = (400, 800, 1_600, 3_200)


class Counted:
    """The game, counting the distinct image and text masks it is asked for (coalitions or products)."""

    def __init__(self, game: TabulatedGame, costs: CostModel | None) -> None:
        self.game = game
        self.images: set[bytes] = set()
        self.texts: set[bytes] = set()
        if costs is not None:
            self.product = self._product
            self.costs = costs

    def _note(self, images: np.ndarray, texts: np.ndarray) -> None:
        self.images.update(r.tobytes() for r in np.packbits(images, axis=1))
        self.texts.update(r.tobytes() for r in np.packbits(texts, axis=1))

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        masks = np.asarray(masks, dtype=bool)
        self._note(masks[:, : self.game.m], masks[:, self.game.m :])
        return self.game(masks)

    def _product(self, image_masks: np.ndarray, text_masks: np.ndarray) -> np.ndarray:
        self._note(np.asarray(image_masks, dtype=bool), np.asarray(text_masks, dtype=bool))
        return self.game.product(image_masks, text_masks)


def measure(run: Callable[[Counted], np.ndarray], game: TabulatedGame, truth: np.ndarray,
            costs: CostModel | None) -> dict[str, float]:
    """Error, distinct image and text encodes, their sum (passes) and CPU seconds of one run."""
    counted = Counted(game, costs)
    start = time.process_time()
    phi = run(counted)
    return {"error": relative_error(phi, truth), "images": len(counted.images), "texts": len(counted.texts),
            "passes": len(counted.images) + len(counted.texts), "cpu": time.process_time() - start}


def averaged(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}


def coalition_curve(game: TabulatedGame, truth: np.ndarray, method: str, seeds: range, budgets) -> list[dict]:
    curve = []
    for budget in budgets:
        rows = [measure(lambda g: estimate_interactions(g, game.m, game.n, method=method, budget=budget,
                                                        seed=s, index="SII").phi, game, truth, None)
                for s in seeds]
        curve.append({"budget": budget, **averaged(rows)})
    return curve


def product_curve(game: TabulatedGame, truth: np.ndarray, index: str, seeds: range, budgets,
                  costs: CostModel = DUAL) -> tuple[list[dict], float]:
    curve, z = [], []
    for budget in budgets:
        rows = []
        for s in seeds:
            holder: dict = {}

            def run(g: Counted) -> np.ndarray:
                holder["est"] = product_estimate(g, game.m, game.n, budget, s, index)
                return holder["est"].phi

            rows.append(measure(run, game, truth, costs))
            est = holder["est"]
            sampled = est.stderr > 0
            z.append(((est.phi - truth) / np.where(sampled, est.stderr, 1.0))[sampled])
        curve.append({"budget": budget, **averaged(rows)})
    zs = np.concatenate(z)
    return curve, float(np.sqrt(np.mean(zs ** 2))) if len(zs) else float("nan")


def encodes_to_reach(curve: list[dict], error: float, key: str = "images") -> tuple[float, str]:
    """Encodes (``key``) at which a curve reaches ``error`` (log-log interpolation); '≤' or '>' when outside it."""
    images = np.array([c[key] for c in curve])
    errors = np.array([c["error"] for c in curve])
    if errors[0] <= error:
        return float(images[0]), "≤"
    for k in range(1, len(curve)):
        if errors[k] <= error:
            t = (np.log(error) - np.log(errors[k - 1])) / (np.log(errors[k]) - np.log(errors[k - 1]))
            return float(np.exp(np.log(images[k - 1]) + t * (np.log(images[k]) - np.log(images[k - 1])))), ""
    return float(images[-1]), ">"


# --- FIxLIP's cross-product Banzhaf regression (reimplemented) ---------------------------------

def _pair_features(bits: np.ndarray) -> np.ndarray:
    k = bits.shape[1]
    rows, cols = np.triu_indices(k, 1)
    return bits[:, rows] * bits[:, cols]


def fixlip_bii(game: TabulatedGame, budget_image: int, budget_text: int, seed: int, counted: Counted) -> np.ndarray:
    """Cross-modal BII from a second-order uniform Banzhaf regression on a sampled image x text product."""
    rng = np.random.default_rng(seed)
    m, n = game.m, game.n

    def sample(k: int, count: int) -> np.ndarray:
        codes = rng.choice(1 << k, size=min(count, 1 << k), replace=False)
        return ((codes[:, None] >> np.arange(k)) & 1).astype(bool)

    images, texts = sample(m, budget_image), sample(n, budget_text)
    values = counted.product(images, texts)
    x, y = images.astype(np.float64), texts.astype(np.float64)
    f = np.concatenate([np.ones((len(x), 1)), x, _pair_features(x)], axis=1)   # image-only features
    g = np.concatenate([y, _pair_features(y)], axis=1)                          # text-only features
    a, b = len(x), len(y)
    blocks = [
        [b * f.T @ f, np.outer(f.sum(0), g.sum(0)), np.kron(f.T @ x, y.sum(0)[None, :])],
        [None, a * g.T @ g, np.kron(x.sum(0)[None, :], g.T @ y)],
        [None, None, np.kron(x.T @ x, y.T @ y)],
    ]
    for r in range(3):
        for c in range(r):
            blocks[r][c] = blocks[c][r].T
    normal = np.block(blocks)
    rhs = np.concatenate([f.T @ values.sum(1), g.T @ values.sum(0), (x.T @ values @ y).reshape(-1)])
    coef = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    return coef[-m * n :].reshape(m, n)


def fixlip_curve(game: TabulatedGame, truth: np.ndarray, seeds: range, passes) -> list[dict]:
    curve = []
    for total in passes:
        budget_text = min(1 << game.n, total // 2)
        budget_image = min(1 << game.m, total - budget_text)
        rows = [measure(lambda c: fixlip_bii(game, budget_image, budget_text, s, c), game, truth, DUAL) for s in seeds]
        curve.append({"budget": total, **averaged(rows)})
    return curve


# --- tables ------------------------------------------------------------------------------------

def table(title: str, curves: dict[str, list[dict]], unit: dict[str, str]) -> str:
    lines = [f"**{title}**", "", "| method | budget | image encodes | text encodes | error | CPU s |",
             "|---|---|---|---|---|---|"]
    for name, curve in curves.items():
        for c in curve:
            lines.append(f"| {name} | {c['budget']:,} {unit[name]} | {c['images']:.0f} | {c['texts']:.0f} | "
                         f"{c['error']:.4f} | {c['cpu']:.2f} |")
    return "\n".join(lines)


def fewer_cell(curve: list[dict], error: float, reference: float, key: str) -> str:
    """Encodes a curve needs to reach ``error`` and how many times fewer than ``reference`` that is."""
    need, side = encodes_to_reach(curve, error, key)
    bound = {"≤": "≥", ">": "<", "": ""}[side]
    return f"{side}{need:.0f} ({bound}{reference / need:.1f}×)"


def more_cell(curve: list[dict], error: float, own: float, key: str) -> str:
    """Encodes a curve needs to reach ``error`` and how many times ``own`` that is."""
    need, side = encodes_to_reach(curve, error, key)
    side = "≥" if side == ">" else side
    return f"{side}{need:.0f} ({side}{need / own:.1f}×)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one game, fewer budgets")
    args = parser.parse_args()
    seeds = range(args.seeds)
    names = [n for n in real_games.SCENES if real_games._table_path(n).exists()]
    if args.quick:
        names = names[:1]
    coalition_budgets = COALITION_BUDGETS[1:3] if args.quick else COALITION_BUDGETS
    headline = ["| game | counted | kernel error @10k | kernel | product (× fewer) | product, text ×0.1 (× fewer) | "
                "multishap (× fewer) |", "|---|---|---|---|---|---|---|"]
    reverse = ["| game | counted | product variant | product encodes | product error | kernel needs (× more) | "
               "multishap needs (× more) |", "|---|---|---|---|---|---|---|"]
    calibration = ["| game | index | RMS z |", "|---|---|---|"]
    for name in names:
        game = real_games.load(name, build_missing=False)
        low = least_budget(game.m, game.n, DUAL)
        passes = [b for b in PASS_BUDGETS if b >= low][: 3 if args.quick else None]
        cheap_budgets = CHEAP_TEXT_BUDGETS[: 3 if args.quick else None]
        sii = game.interactions("SII")
        product, z_sii = product_curve(game, sii, "SII", seeds, passes)
        cheap, z_cheap = product_curve(game, sii, "SII", seeds, cheap_budgets, CHEAP_TEXT)
        kernel = coalition_curve(game, sii, "kernel", seeds, coalition_budgets)
        multishap = coalition_curve(game, sii, "multishap", seeds, coalition_budgets)
        print(table(f"{game.name}, SII: error vs encodes (mean of {len(seeds)} seeds)",
                    {"product": product, "product, text ×0.1": cheap, "kernel": kernel, "multishap": multishap},
                    {"product": "passes", "product, text ×0.1": "units", "kernel": "coalitions",
                     "multishap": "coalitions"}), "\n", flush=True)
        at = next((c for c in kernel if c["budget"] == HEADLINE_BUDGET), kernel[-1])
        for key, label in (("images", "image encodes"), ("passes", "image + text encodes")):
            cells = [fewer_cell(curve, at["error"], at[key], key) for curve in (product, cheap, multishap)]
            headline.append(f"| {name} | {label} | {at['error']:.4f} | {at[key]:.0f} | {' | '.join(cells)} |")
        for key, label, variant, curve in (("images", "image encodes", "text ×0.1", cheap),
                                           ("passes", "image + text encodes", "dual (1, 1, 0)", product)):
            for point in curve[:3]:
                cells = [more_cell(other, point["error"], point[key], key) for other in (kernel, multishap)]
                reverse.append(f"| {name} | {label} | {variant} | {point[key]:.0f} | {point['error']:.4f} | "
                               f"{' | '.join(cells)} |")

        bii = game.interactions("BII")
        bii_passes = [p for p in BII_PASSES if p >= low]
        product_b, z_bii = product_curve(game, bii, "BII", seeds, bii_passes)
        fixlip = fixlip_curve(game, bii, seeds, bii_passes)
        print(table(f"{game.name}, BII at equal encoder passes (FIxLIP: half image, half text)",
                    {"product": product_b, "FIxLIP": fixlip}, {"product": "passes", "FIxLIP": "passes"}), "\n",
              flush=True)
        calibration += [f"| {name} | SII | {z_sii:.2f} |", f"| {name} | SII, text ×0.1 | {z_cheap:.2f} |",
                        f"| {name} | BII | {z_bii:.2f} |"]
    print("**Encodes to reach kernel's error at 10k coalitions**\n")
    print("\n".join(headline), "\n")
    print("**Encodes the coalition estimators need to reach product's error**\n")
    print("\n".join(reverse), "\n")
    print("**Calibration of product's standard errors**\n")
    print("\n".join(calibration))


if __name__ == "__main__":
    main()
