"""Heatmaps of Phi over the image: where each word works with (red) or against (blue) each region."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import numpy as np

from .images import to_pil

if TYPE_CHECKING:
    from .explanation import Explanation


def plot_explanation(exp: "Explanation", image: Optional[object], max_tokens: int = 12):
    """One panel per token (its column of Phi on the patch grid) plus the token average.

    Every panel shares one symmetric colour scale, so colours compare across tokens.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows, cols = exp.grid
    shown = list(range(min(len(exp.tokens), max_tokens)))
    maps = [exp.phi[:, j].reshape(rows, cols) for j in shown] + [exp.phi.mean(axis=1).reshape(rows, cols)]
    titles = [repr(exp.tokens[j]) for j in shown] + ["average over tokens"]
    scale = max(float(np.abs(np.stack(maps)).max()), 1e-12)
    pixels = None if image is None else np.asarray(to_pil(image))
    ncols = min(4, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    aspect = (pixels.shape[0] / pixels.shape[1]) if pixels is not None else rows / cols
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols + 1.2, (3.2 * aspect + 0.45) * nrows + 0.5),
                             squeeze=False, layout="constrained")
    extent = None if pixels is None else (0, pixels.shape[1], pixels.shape[0], 0)
    for ax, data, title in zip(axes.flat, maps, titles):
        if pixels is not None:
            ax.imshow(pixels, extent=extent)
        shade = ax.imshow(data, cmap="RdBu_r", vmin=-scale, vmax=scale, alpha=0.55 if pixels is not None else 1.0,
                          extent=extent, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(maps):]:
        ax.axis("off")
    fig.colorbar(shade, ax=list(axes.flat), shrink=0.8, label="Φ  (red: synergy, blue: suppression)")
    fig.suptitle(f"{exp.method} {exp.index}, {exp.evaluations} evaluations; synergy ratio "
                 f"{exp.metrics.synergy_ratio:.2f}", fontsize=11)
    return fig
