"""What the self-contained HTML report embeds: its stylesheet and script, the photo and the per-token Φ overlays as
PNG data URLs (numpy and PIL only, no matplotlib), and small inline SVG charts, so the page needs no network."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

DISPLAY_SIZE = 440      # the photo's longer side on the page, in pixels
OVERLAY_ALPHA = 0.8     # the overlay's opacity where |Φ| reaches the scale's maximum; 0 where Φ = 0
SYNERGY_RGB = np.array([178, 24, 43])      # Φ > 0: red, the ends of the RdBu colour map the figures use
SUPPRESSION_RGB = np.array([33, 102, 172])  # Φ < 0: blue
GRID_RGBA = (40, 40, 40, 90)
NO_PHOTO_GREY = 225

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
main{max-width:1080px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:21px;margin:4px 0 2px}h2{font-size:16px;margin:0 0 8px}
.sub{color:#555;margin-bottom:14px;word-break:break-word}
section{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:12px 16px;margin:12px 0}
.cols{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}.cols>div{flex:1 1 300px;min-width:0}
.stage{position:relative;display:inline-block;line-height:0;border:1px solid #ccc}
[hidden]{display:none!important}
.stage img{display:block}.stage .overlay{position:absolute;left:0;top:0}
.photo{filter:grayscale(1)}
.picker{display:flex;flex-wrap:wrap;gap:5px;margin:10px 0 6px}
.picker button{font:inherit;padding:3px 9px;border:1px solid #b8bfca;border-radius:14px;background:#fff;cursor:pointer}
.picker button:hover{background:#eef2f8}.picker button:focus-visible{outline:2px solid #1f6feb;outline-offset:1px}
.picker button[aria-pressed=true]{background:#1d2330;color:#fff;border-color:#1d2330}
.legend{display:flex;align-items:center;gap:6px;font-size:12px;color:#444}
.legend .bar{width:160px;height:10px;border:1px solid #ccc;
 background:linear-gradient(90deg,rgb(33,102,172),rgba(255,255,255,0),rgb(178,24,43))}
.note{color:#8a5a00;background:#fff7e0;border:1px solid #f0d890;border-radius:6px;padding:6px 10px;margin:6px 0}
table{border-collapse:collapse;margin:2px 0 8px}th,td{text-align:left;padding:3px 10px 3px 0;vertical-align:top}
th{font-weight:600;color:#444;border-bottom:1px solid #dde1e7}td.num{font-variant-numeric:tabular-nums}
.good{color:#17692d;font-weight:600}.bad{color:#a3161b;font-weight:600}
caption{text-align:left;font-weight:600;padding-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:#444}
"""

SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("ms-data").textContent);
  var buttons = Array.prototype.slice.call(document.querySelectorAll(".picker button"));
  var overlays = document.querySelectorAll(".overlay");
  var caption = document.getElementById("ms-showing");
  function show(index) {
    overlays.forEach(function (img) { img.hidden = img.getAttribute("data-index") !== String(index); });
    buttons.forEach(function (b) { b.setAttribute("aria-pressed", b.getAttribute("data-index") === String(index)); });
    caption.textContent = data.captions[index];
  }
  buttons.forEach(function (b, i) {
    b.addEventListener("click", function () { show(b.getAttribute("data-index")); });
    b.addEventListener("keydown", function (e) {
      var step = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
      if (!step) return;
      e.preventDefault();
      var next = buttons[(i + step + buttons.length) % buttons.length];
      next.focus();
      show(next.getAttribute("data-index"));
    });
  });
  show(data.initial);
})();
"""


def script_json(value: Any) -> str:
    """``value`` as JSON safe inside a <script> element: ``<``, ``>`` and ``&`` are written as JSON escapes, so
    no ``</script>`` can close it early and no ``<!--`` can change how the parser reads the rest."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def png_data_url(image: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def display_size(image: Optional[np.ndarray], grid: tuple[int, int]) -> tuple[int, int]:
    """(width, height) on the page: the photo's aspect (else the grid's) with the longer side DISPLAY_SIZE."""
    height, width = grid if image is None else image.shape[:2]
    scale = DISPLAY_SIZE / max(height, width)
    return max(1, round(width * scale)), max(1, round(height * scale))


def photo(image: Optional[np.ndarray], size: tuple[int, int]) -> Image.Image:
    """The photo resized for the page, or a plain grey canvas of that size when there is no photo."""
    if image is None:
        return Image.new("RGB", size, (NO_PHOTO_GREY,) * 3)
    from .images import to_pil

    return to_pil(image).resize(size, Image.Resampling.LANCZOS)


def overlay(values: np.ndarray, vmax: float, size: tuple[int, int]) -> Image.Image:
    """One (rows, cols) map of Φ as a transparent RGBA image of ``size``: each patch red (Φ > 0) or blue (Φ < 0)
    with an opacity growing with |Φ| up to OVERLAY_ALPHA at ``vmax``, and faint patch grid lines."""
    rows, cols = values.shape
    scaled = np.clip(values / vmax, -1.0, 1.0) if vmax > 0 else np.zeros_like(values)
    rgba = np.zeros((rows, cols, 4), dtype=np.uint8)
    rgba[..., :3] = np.where((scaled >= 0)[..., None], SYNERGY_RGB, SUPPRESSION_RGB)
    rgba[..., 3] = np.round(255 * OVERLAY_ALPHA * np.abs(scaled))
    img = Image.fromarray(rgba, "RGBA").resize(size, Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(img)
    width, height = size
    for c in range(1, cols):
        x = round(c * width / cols)
        draw.line([(x, 0), (x, height)], fill=GRID_RGBA)
    for r in range(1, rows):
        y = round(r * height / rows)
        draw.line([(0, y), (width, y)], fill=GRID_RGBA)
    return img


def curves_svg(alphas: Sequence[float], curves: Sequence[tuple[str, str, Sequence[float]]],
               width: int = 320, height: int = 170) -> str:
    """Line curves over α in [0, 1] as inline SVG: ``curves`` are (label, colour, values), one value per α."""
    pad_l, pad_r, pad_t, pad_b = 40, 10, 10, 26
    values = [v for _, _, ys in curves for v in ys]
    if not len(alphas) or not values:
        return "<p>no curves recorded</p>"
    low, high = min(min(values), 0.0), max(max(values), 0.0)
    span = (high - low) or 1.0
    a_low, a_span = min(alphas), (max(alphas) - min(alphas)) or 1.0

    def x(a: float) -> float:
        return pad_l + (a - a_low) / a_span * (width - pad_l - pad_r)

    def y(v: float) -> float:
        return pad_t + (high - v) / span * (height - pad_t - pad_b)

    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="insertion and deletion curves">',
             f'<line x1="{pad_l}" y1="{y(0):.1f}" x2="{width - pad_r}" y2="{y(0):.1f}" stroke="#bbb"/>',
             f'<line x1="{pad_l}" y1="{pad_t}" x2="{pad_l}" y2="{height - pad_b}" stroke="#888"/>',
             f'<text x="{pad_l - 4}" y="{y(high) + 4:.1f}" text-anchor="end">{high:.3g}</text>',
             f'<text x="{pad_l - 4}" y="{y(low) + 4:.1f}" text-anchor="end">{low:.3g}</text>',
             f'<text x="{x(a_low):.1f}" y="{height - 8}">{a_low:g}</text>',
             f'<text x="{x(a_low + a_span):.1f}" y="{height - 8}" text-anchor="end">{a_low + a_span:g}</text>',
             f'<text x="{width / 2:.0f}" y="{height - 8}" text-anchor="middle">α (share of players kept)</text>']
    for n, (label, colour, ys) in enumerate(curves):
        points = " ".join(f"{x(a):.1f},{y(v):.1f}" for a, v in zip(alphas, ys))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}">'
                     f"<title>{escape(label)}</title></polyline>")
        parts.append(f'<text x="{width - pad_r - 4}" y="{pad_t + 12 + 13 * n}" text-anchor="end" '
                     f'style="fill:{colour}">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def bars_svg(values: Sequence[float], labels: Sequence[str], width: int = 300, height: int = 70) -> str:
    """A small bar chart of signed values (red up, blue down) as inline SVG, each bar titled with its label."""
    if not len(values):
        return "<span>none</span>"
    top = max(float(np.max(np.abs(values))), 1e-300)
    mid, step = height / 2, width / len(values)
    parts = [f'<svg width="{width}" height="{height}" role="img">',
             f'<line x1="0" y1="{mid}" x2="{width}" y2="{mid}" stroke="#bbb"/>']
    for i, (v, label) in enumerate(zip(values, labels)):
        h = abs(float(v)) / top * (mid - 2)
        colour = "rgb(178,24,43)" if v >= 0 else "rgb(33,102,172)"
        parts.append(f'<rect x="{i * step + step * 0.1:.1f}" y="{mid - h if v >= 0 else mid:.1f}" '
                     f'width="{max(step * 0.8, 0.5):.1f}" height="{h:.1f}" fill="{colour}">'
                     f"<title>{escape(label)}: {float(v):+.4g}</title></rect>")
    parts.append("</svg>")
    return "".join(parts)
