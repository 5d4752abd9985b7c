"""Figures of results: heatmaps of Phi over the photo (where each word works with, red, or against, blue, each
region) and faithfulness curves. Making a figure never switches the matplotlib backend."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Optional

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from .images import to_pil
from .labels import token_labels

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .explanation import Explanation, FaithfulnessReport
    from .images import ImageLike

SCALES = ("shared", "per-token")
CMAP = "RdBu_r"
OVERLAY_ALPHA = 0.8  # the overlay's opacity where |Φ| reaches the colour scale's maximum; it is 0 where Φ = 0
GRID_COLOUR = (0.15, 0.15, 0.15, 0.45)
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma, for the photo under the overlay
MAX_TICK_LABELS = 8  # per axis; larger grids label every k-th row or column


def new_figure(width: float, height: float) -> Figure:
    """A figure made through pyplot (so a notebook's inline backend can show it) and let go of by pyplot at once:
    a notebook shows it once, as the value returned, loops do not pile up open figures, and the user's own pyplot
    figures and backend are left alone."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(width, height), layout="constrained")
    plt.close(fig)
    return fig


def png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    """The figure encoded as PNG."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _ticks(count: int, size: float, prefix: str) -> tuple[np.ndarray, list[str]]:
    """Tick positions at the patch centres and their labels (``r0``, ``c3``), every k-th one on a large grid."""
    step = math.ceil(count / MAX_TICK_LABELS)
    return (np.arange(count) + 0.5) * size, [f"{prefix}{i}" if i % step == 0 else "" for i in range(count)]


def draw_heatmap(ax: "Axes", data: np.ndarray, vmax: float, pixels: Optional[np.ndarray]) -> ScalarMappable:
    """One (rows, cols) map of Phi: the photo in grey at full brightness, so every colour is Φ's, each patch tinted
    red (synergy) or blue (suppression) with an opacity growing with |Φ| up to ``OVERLAY_ALPHA`` at ``vmax`` (without
    a photo, opaque colours); patch grid lines and ``r``/``c`` ticks name the patches as the summaries do."""
    rows, cols = data.shape
    height, width = (rows, cols) if pixels is None else pixels.shape[:2]
    extent = (0, width, height, 0)
    norm, cmap = Normalize(-vmax, vmax), colormaps[CMAP]
    rgba = cmap(norm(data))
    if pixels is not None:
        ax.imshow(pixels @ GREY_WEIGHTS, cmap="gray", vmin=0, vmax=255, extent=extent)
        rgba[..., 3] = OVERLAY_ALPHA * np.clip(np.abs(data) / vmax, 0.0, 1.0)
    ax.imshow(rgba, extent=extent, interpolation="nearest")
    patch_w, patch_h = width / cols, height / rows
    ax.vlines(np.arange(1, cols) * patch_w, 0, height, colors=[GRID_COLOUR], linewidths=0.6)
    ax.hlines(np.arange(1, rows) * patch_h, 0, width, colors=[GRID_COLOUR], linewidths=0.6)
    ax.set_xticks(*_ticks(cols, patch_w, "c"))
    ax.set_yticks(*_ticks(rows, patch_h, "r"))
    ax.tick_params(length=0, labelsize=7, pad=2)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    return ScalarMappable(norm, cmap)


def heading(exp: "Explanation", scale: str) -> str:
    """Two title lines: what was explained (text, answer, target), then how, and which colour scale is used."""
    p = exp.provenance
    if p.text is None:
        asked = "text and answer not recorded"
    else:
        asked = f"{_short(p.text)!r} → answer {_short(p.answer)!r}" if p.answer else f"{_short(p.text)!r}, no answer"
    how = (f"{exp.method} {exp.index}, {exp.evaluations} evaluations · synergy ratio "
           f"{exp.metrics.synergy_ratio:.2f} · colour scale: {scale}")
    return f"{asked} · target {exp.target.name}\n{how}{' · dry run: Φ is zeros' if exp.dry_run else ''}"


def plot_explanation(exp: "Explanation", image: Optional["ImageLike"] = None, max_tokens: int = 12,
                     scale: str = "shared") -> Figure:
    """One panel per token (its column of Phi on the patch grid, the first ``max_tokens`` tokens) plus the
    average over all tokens; ``scale="shared"`` gives every panel one symmetric scale so colours compare,
    ``"per-token"`` gives each panel its own, with its own colour bar."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1; got {max_tokens}")
    rows, cols = exp.grid
    count = len(exp.tokens)
    shown = range(min(count, max_tokens))
    labels = token_labels(exp.tokens)
    maps = [exp.phi[:, j].reshape(rows, cols) for j in shown] + [exp.phi.mean(axis=1).reshape(rows, cols)]
    titles = [labels[j] for j in shown] + [f"average over all {count} tokens"]
    pixels = None if image is None else np.asarray(to_pil(image))
    per_token = scale == "per-token"
    ncols = min(4, len(maps))
    nrows = math.ceil(len(maps) / ncols)
    aspect = rows / cols if pixels is None else pixels.shape[0] / pixels.shape[1]
    fig = new_figure((3.2 + 0.7 * per_token) * ncols + 1.2, (2.9 * aspect + 0.6) * nrows + 1.0)
    axes = list(fig.subplots(nrows, ncols, squeeze=False).flat)
    shared = max(float(np.abs(np.stack(maps)).max()), 1e-12)
    for ax, data, title in zip(axes, maps, titles):
        vmax = max(float(np.abs(data).max()), 1e-12) if per_token else shared
        mappable = draw_heatmap(ax, data, vmax, pixels)
        ax.set_title(title, fontsize=10)
        if per_token:
            fig.colorbar(mappable, ax=ax, shrink=0.8, label="Φ, this panel's scale")
    for ax in axes[len(maps):]:
        ax.remove()
    if not per_token:
        fig.colorbar(mappable, ax=axes[:len(maps)], shrink=0.8,
                     label=f"Φ, shared scale ±{shared:.3g}  (red: synergy, blue: suppression)")
    fig.suptitle(heading(exp, scale), fontsize=11)
    notes = []
    if len(shown) < count:
        notes.append(f"showing {len(shown)} of {count} tokens; pass max_tokens={count} to see all")
    if pixels is None:
        name = exp.provenance.image_name
        notes.append(f"no image: pass plot(image=...) to draw over the photo{f' ({name})' if name else ''}")
    if notes:
        fig.supxlabel("\n".join(notes), fontsize=9)
    return fig


def heatmap_thumbnail(exp: "Explanation", size: float = 2.6) -> Figure:
    """A small figure of the average of Phi over tokens on the explanation's own image, for notebook summaries."""
    rows, cols = exp.grid
    pixels = None if exp.image is None else np.asarray(to_pil(exp.image))
    aspect = rows / cols if pixels is None else pixels.shape[0] / pixels.shape[1]
    fig = Figure(figsize=(size, size * aspect + 0.35), layout="constrained")
    data = exp.phi.mean(axis=1).reshape(rows, cols)
    draw_heatmap(fig.add_subplot(), data, max(float(np.abs(data).max()), 1e-12), pixels)
    fig.axes[0].set_title("average Φ over tokens", fontsize=9)
    return fig


def plot_faithfulness(report: "FaithfulnessReport") -> Figure:
    """The cross-modal interaction of the top-α patches and tokens, inserted (I) and deleted (D), over α, the
    macro-game SII reference when it was computed, and the unimodal metrics beneath; beside it the unimodal
    insertion and deletion curves when the report has them."""
    unimodal = bool(report.visual.curve_ins)
    fig = new_figure(12.0 if unimodal else 6.6, 4.6)
    ax = fig.add_subplot(1, 2 if unimodal else 1, 1)
    ax.plot(report.alphas, report.curve_ins, marker="o", label=f"insertion I(α)   F_ins {report.f_ins:.3f}")
    ax.plot(report.alphas, report.curve_del, marker="s", label=f"deletion D(α)   F_del {report.f_del:.3f}")
    if report.macro_per_step is not None:
        ax.plot(report.alphas, report.macro_per_step, linestyle="--", color="grey",
                label=f"macro-game SII reference   AUC {report.macro_auc:.3g}")
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("α: share of the top-scored patches and tokens inserted or deleted")
    ax.set_ylabel("image×text interaction (score units)")
    ax.legend(fontsize=8)
    p = report.provenance
    scored = f"{report.explainer} scores" if report.explainer else "scores"
    answer = f" → answer {_short(p.answer)!r}" if p.answer else ""
    asked = "" if p.text is None else f"\n{_short(p.text)!r}{answer}"
    ax.set_title(f"F_syn {report.f_syn:.3f} of {scored} on target {report.target.name}{asked}", fontsize=10)
    v, t = report.visual, report.text
    if unimodal:
        _unimodal_curves(fig.add_subplot(1, 2, 2), report)
    fig.supxlabel(f"unimodal: visual insertion {v.insertion:.3f}, deletion {v.deletion:.3f}, SRG {v.srg:+.3f}; "
                  f"text insertion {t.insertion:.3f}, deletion {t.deletion:.3f}, SRG {t.srg:+.3f}", fontsize=8)
    return fig


def _unimodal_curves(ax, report: "FaithfulnessReport") -> None:
    """The classic one-modality curves F_syn replaces: top patches (visual) or tokens (text) inserted or deleted."""
    for name, modality, colour in (("visual", report.visual, "tab:green"), ("text", report.text, "tab:purple")):
        ax.plot(report.alphas, modality.curve_ins, color=colour, marker="o",
                label=f"{name} insertion   area {modality.insertion:.3f}")
        ax.plot(report.alphas, modality.curve_del, color=colour, marker="s", linestyle="--",
                label=f"{name} deletion   area {modality.deletion:.3f}")
    ax.set_xlabel("α: share of one modality's top-scored players inserted or deleted")
    ax.set_ylabel("normalised score (clipped to [0, 1])")
    ax.set_title("unimodal curves", fontsize=10)
    ax.legend(fontsize=8)
