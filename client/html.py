"""The HTML a notebook shows for a result: what was asked, the metrics, the strongest pairs and a small inline
PNG, so displaying a result needs no extra call."""

from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING, Sequence

from .labels import Pair, strongest_pairs
from .plot import heatmap_thumbnail, plot_faithfulness, png_bytes
from .report import usage_line

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .explanation import Explanation, FaithfulnessReport
    from .provenance import Provenance

TOP_PAIRS = 3
CELL = 'style="text-align:left;padding:1px 8px"'


def _img(fig: "Figure", alt: str) -> str:
    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}" style="max-width:320px"/>'


def _table(caption: str, rows: Sequence[tuple[str, str]]) -> str:
    body = "".join(f"<tr><td {CELL}>{escape(k)}</td><td {CELL}>{escape(v)}</td></tr>" for k, v in rows)
    return f'<table style="border-collapse:collapse"><caption style="text-align:left"><b>{escape(caption)}</b>' \
           f"</caption>{body}</table>"


def _pairs(pairs: list[Pair]) -> list[tuple[str, str]]:
    return [(p.label, f"Φ = {p.phi:+.4g} ± {p.stderr:.2g}") for p in pairs] or [("none", "")]


def _asked(p: "Provenance") -> str:
    if p.text is None:
        return "text and answer not recorded"
    answer = f" → answer {p.answer!r}" if p.answer else ", no answer"
    image = f" on image {p.image_name!r}" if p.image_name else ""
    return f"{p.text!r}{answer}{image}"


def _layout(title: str, subtitle: str, parts: Sequence[str]) -> str:
    cells = "".join(f'<div style="margin-right:1.5em">{part}</div>' for part in parts)
    return (f'<div class="multishap"><div><b>{escape(title)}</b> {escape(subtitle)}</div>'
            f'<div style="display:flex;flex-wrap:wrap;align-items:flex-start">{cells}</div></div>')


def explanation_html(exp: "Explanation", k: int = TOP_PAIRS) -> str:
    """The explanation as HTML: what was asked, the MultiSHAP metrics, the ``k`` strongest synergy and suppression
    pairs (``patch r1c2 × 'cat'``) and a thumbnail heatmap of the average over tokens."""
    m, cols = exp.metrics, exp.grid[1]
    metrics = [
        ("total Σ|Φ|", f"{m.total:.4g}"), ("synergy", f"{m.synergy:.4g}"), ("suppression", f"{m.suppression:.4g}"),
        ("synergy ratio", f"{m.synergy_ratio:.3f}"), ("v(full) / v(empty)", f"{exp.v_full:.4g} / {exp.v_empty:.4g}"),
        ("image×text interaction", f"{exp.modality_interaction:+.4g}"),
        ("evaluations", f"{exp.evaluations} ({exp.method} {exp.index}, seed {exp.seed}, {exp.seconds:.2f} s)"),
    ]
    if line := usage_line(exp.usage, estimate=exp.dry_run):
        metrics.append(("cost", line))
    pairs = (_table("strongest synergy", _pairs(strongest_pairs(exp.phi, exp.stderr, exp.tokens, cols, k, True)))
             + _table("strongest suppression",
                      _pairs(strongest_pairs(exp.phi, exp.stderr, exp.tokens, cols, k, False))))
    rows = exp.grid[0]
    subtitle = (f"of {_asked(exp.provenance)} on target {exp.target.name} ({exp.target.model_id or 'no model id'}): "
                f"{rows}x{cols} patches × {len(exp.tokens)} tokens{' (dry run: Φ is zeros)' if exp.dry_run else ''}")
    return _layout("Explanation", subtitle, [_img(heatmap_thumbnail(exp), "average Φ over tokens"),
                                             _table("metrics", metrics), pairs])


def faithfulness_html(report: "FaithfulnessReport") -> str:
    """The faithfulness report as HTML: what was scored, F_syn and its parts, the unimodal metrics and the curves."""
    v, t = report.visual, report.text
    scores = [
        ("F_syn", f"{report.f_syn:.4f}"), ("F_ins / F_del", f"{report.f_ins:.4f} / {report.f_del:.4f}"),
        ("F_syn unclipped / raw", f"{report.f_syn_unclipped:.4f} / {report.f_syn_raw:.4g}"),
        ("visual insertion / deletion / SRG", f"{v.insertion:.3f} / {v.deletion:.3f} / {v.srg:+.3f}"),
        ("text insertion / deletion / SRG", f"{t.insertion:.3f} / {t.deletion:.3f} / {t.srg:+.3f}"),
        *([("macro-game SII AUC", f"{report.macro_auc:.4g}")] if report.macro_auc is not None else []),
        ("evaluations", f"{report.evaluations} ({report.seconds:.2f} s)"),
    ]
    if line := usage_line(report.usage):
        scores.append(("cost", line))
    scored = f"{report.explainer} scores" if report.explainer else "scores"
    subtitle = f"of {scored} for {_asked(report.provenance)} on target {report.target.name}"
    return _layout("Faithfulness", subtitle, [_table("metrics", scores),
                                              _img(plot_faithfulness(report), "faithfulness curves")])
