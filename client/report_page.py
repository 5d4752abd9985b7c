"""Self-contained HTML audit reports: one page for an explanation (the photo with a per-token Φ overlay and a token
picker, the strongest pairs, metrics, what an audit added, provenance) and one for a dataset run (MSR and SDR with
intervals per split, the rows, the failures). Everything is inline, so a page opens offline and can be mailed.

Every string from a result (tokens, texts, answers, ids) is HTML-escaped; the script reads its data from a JSON
block that cannot close its <script> element, and writes it back only as text.
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

import numpy as np

from . import report_assets as assets
from .labels import Pair, patch_label, strongest_pairs, token_labels
from .report import usage_line

if TYPE_CHECKING:
    from .dataset import DatasetReport
    from .explanation import Explanation

TOP_PAIRS = 5
Cell = Union[str, float, int, bool, None]


def _num(value: Optional[float], digits: str = ".4g") -> str:
    """A number for a table; "n/a" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return format(value, digits)


def _ci(value: float, ci: Sequence[float], digits: str = ".3f") -> str:
    return f"{_num(value, digits)} [{_num(ci[0], digits)}, {_num(ci[1], digits)}]"


def _cell(value: Cell) -> str:
    if isinstance(value, bool):
        return '<td class="good">yes</td>' if value else '<td class="bad">no</td>'
    if isinstance(value, (int, float)):
        return f'<td class="num">{escape(_num(value) if isinstance(value, float) else str(value))}</td>'
    return f"<td>{escape('—' if value is None else value)}</td>"


def _table(header: Sequence[str], rows: Iterable[Sequence[Cell]], caption: str = "", cls: str = "") -> str:
    """A table of escaped cells (no header row when ``header`` is all empty); booleans read yes/no, floats are
    shortened and None reads as a dash."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    caption_html = f"<caption>{escape(caption)}</caption>" if caption else ""
    class_attr = f' class="{cls}"' if cls else ""
    return f"<table{class_attr}>{caption_html}{thead}<tbody>{body}</tbody></table>"


def _pairs_table(caption: str, pairs: list[Pair]) -> str:
    rows = [(p.label, f"{p.phi:+.4g}", f"± {p.stderr:.2g}") for p in pairs] or [("none", "", "")]
    return _table(("pair", "Φ", "stderr"), rows, caption)


def _section(heading: str, body: str, section_id: str = "") -> str:
    id_attr = f' id="{section_id}"' if section_id else ""
    return f"<section{id_attr}><h2>{escape(heading)}</h2>{body}</section>"


def _document(title: str, subtitle: str, sections: Sequence[str], data: Optional[dict[str, Any]] = None) -> str:
    """The whole page: inline style, the sections, and (with ``data``) the picker's data and script."""
    script = ""
    if data is not None:
        script = (f'<script type="application/json" id="ms-data">{assets.script_json(data)}</script>'
                  f"<script>{assets.SCRIPT}</script>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{escape(title)}</title><style>{assets.STYLE}</style></head><body><main>"
            f"<h1>{escape(title)}</h1><div class=\"sub\">{escape(subtitle)}</div>{''.join(sections)}"
            f"</main>{script}</body></html>\n")


def _asked(exp: "Explanation") -> str:
    p = exp.provenance
    if p.text is None:
        return "text and answer not recorded"
    return f"{p.text!r} → answer {p.answer!r}" if p.answer else f"{p.text!r}, no answer"


def _heatmap(exp: "Explanation") -> tuple[str, dict[str, Any]]:
    """The photo, one overlay per token on a shared symmetric scale and one for the sum over tokens (its own
    scale), the token picker and legend; and the script's data (captions, the overlay shown first)."""
    rows, cols = exp.grid
    size = assets.display_size(exp.image, exp.grid)
    labels = token_labels(exp.tokens)
    vmax = float(np.max(np.abs(exp.phi))) if exp.phi.size else 0.0
    total = exp.phi.sum(axis=1) if exp.phi.size else np.zeros(rows * cols)
    total_max = float(np.max(np.abs(total))) if total.size else 0.0
    maps = [(exp.phi[:, j].reshape(rows, cols), vmax) for j in range(len(exp.tokens))]
    maps.append((total.reshape(rows, cols), total_max))
    captions = [f"token {label}: Φ of each patch with this token (shared scale ±{vmax:.3g})" for label in labels]
    captions.append(f"all tokens (sum): Σ over tokens of Φ per patch (own scale ±{total_max:.3g})")
    initial = len(exp.tokens)
    width, height = size
    images = [f'<img class="photo" src="{assets.png_data_url(assets.photo(exp.image, size))}" width="{width}" '
              f'height="{height}" alt="the photo explained">']
    for index, (values, scale) in enumerate(maps):
        hidden = "" if index == initial else " hidden"
        url = assets.png_data_url(assets.overlay(values, scale, size))
        images.append(f'<img class="overlay" data-index="{index}" src="{url}" width="{width}" height="{height}" '
                      f'alt="Φ overlay {index}"{hidden}>')
    buttons = [f'<button type="button" data-index="{j}" aria-pressed="false">{escape(label)}</button>'
               for j, label in enumerate(labels)]
    buttons.append(f'<button type="button" data-index="{initial}" aria-pressed="true">all tokens (sum)</button>')
    note = "" if exp.image is not None else (
        '<div class="note">No photo was recorded with this explanation (pass --image to draw the overlay over '
        "it); the overlay is shown on a grey canvas.</div>")
    body = (f'{note}<div class="stage">{"".join(images)}</div>'
            f'<div class="picker" role="toolbar" aria-label="token shown">{"".join(buttons)}</div>'
            f'<div id="ms-showing" aria-live="polite">{escape(captions[initial])}</div>'
            '<div class="legend"><span>suppression (Φ &lt; 0)</span><span class="bar"></span>'
            "<span>synergy (Φ &gt; 0)</span></div>"
            f"<div class=\"legend\">patches {rows}×{cols}, row-major from r0c0 at the top left</div>")
    return body, {"captions": captions, "initial": initial}


def _metrics(exp: "Explanation") -> str:
    m = exp.metrics
    rows: list[Sequence[Cell]] = [
        ("total Σ|Φ|", m.total), ("synergy", m.synergy), ("suppression", m.suppression),
        ("synergy ratio R", f"{m.synergy_ratio:.3f}"), ("v(full)", exp.v_full), ("v(empty)", exp.v_empty),
        ("v(image only)", exp.v_image_only), ("v(text only)", exp.v_text_only),
        ("image×text interaction", exp.modality_interaction), ("evaluations", exp.evaluations),
        ("seconds", exp.seconds)]
    return _table(("metric", "value"), rows)


def _answer(exp: "Explanation") -> str:
    a = exp.answer
    if a is None:
        return ""
    rows: list[Sequence[Cell]] = [("answer", a.answer or "(none)"), ("how", a.how)]
    if a.judged:
        rows += [("ground truth", a.ground_truth), ("correct", a.correct)]
    else:
        rows.append(("correct", "not judged (no ground truth)"))
    if a.error:
        rows.append(("no answer because", a.error))
    body = _table(("", ""), rows)
    if a.candidates:
        body += _table(("candidate", "score"), zip(a.candidates, list(a.scores) or [None] * len(a.candidates)),
                       "candidates")
    return _section("The model's answer", body, "answer")


def _influence(exp: "Explanation") -> str:
    inf = exp.influence
    if inf is None:
        return ""
    rows, cols = exp.grid
    patches = [patch_label(i, cols) for i in range(rows * cols)]
    tokens = token_labels(exp.tokens)
    head = _table(("", ""), [
        ("image on text", inf.image_on_text), ("text on image", inf.text_on_image),
        ("redundancy flag", "yes: one modality alone carries the score" if inf.redundancy_flag else "no"),
        ("evaluations", inf.evaluations), ("exact", "yes" if inf.exact else "no, estimated")])
    vectors = [("patch Shapley, text present", inf.patch_shapley_with_text, patches),
               ("patch Shapley, text absent", inf.patch_shapley_without_text, patches),
               ("token Shapley, image present", inf.token_shapley_with_image, tokens),
               ("token Shapley, image absent", inf.token_shapley_without_image, tokens)]
    bars = "".join(f"<div><div>{escape(name)}</div>{assets.bars_svg(list(v), labels)}</div>"
                   for name, v, labels in vectors)
    return _section("Modality influence", f'{head}<div class="cols">{bars}</div>', "influence")


def _stability(exp: "Explanation") -> str:
    s = exp.stability
    if s is None:
        return ""
    head = _table(("", ""), [
        ("rank correlation", s.rank_correlation), ("top-k overlap", s.topk_overlap), ("k", s.top_k),
        ("entries compared", f"{s.kept_entries} of {s.total_entries} (|Φ| > {s.z:g} stderr)"),
        ("repeats", s.repeats)])
    per = _table(("perturbation", "rank correlation", "top-k overlap"),
                 [(name, p.rank_correlation, p.topk_overlap) for name, p in s.per_perturbation.items()],
                 "per perturbation")
    return _section("Stability", f'<div class="cols"><div>{head}</div><div>{per}</div></div>', "stability")


def _faithfulness(exp: "Explanation") -> str:
    f = exp.faithfulness
    if f is None:
        return ""
    head = _table(("", ""), [
        ("F_syn", f.f_syn), ("F_ins / F_del", f"{f.f_ins:.4g} / {f.f_del:.4g}"),
        ("F_syn unclipped / raw", f"{f.f_syn_unclipped:.4g} / {f.f_syn_raw:.4g}"),
        ("visual insertion / deletion / SRG", f"{f.visual.insertion:.4g} / {f.visual.deletion:.4g} / "
                                              f"{f.visual.srg:.4g}"),
        ("text insertion / deletion / SRG", f"{f.text.insertion:.4g} / {f.text.deletion:.4g} / {f.text.srg:.4g}"),
        ("evaluations", f.evaluations)])
    svg = assets.curves_svg(list(f.alphas), [("insertion", "rgb(178,24,43)", list(f.curve_ins)),
                                             ("deletion", "rgb(33,102,172)", list(f.curve_del))])
    return _section("Faithfulness (F_syn)", f'<div class="cols"><div>{head}</div><div>{svg}</div></div>',
                    "faithfulness")


def _provenance(exp: "Explanation") -> str:
    p, t = exp.provenance, exp.target
    masking = p.masking
    rows: list[Sequence[Cell]] = [
        ("target", t.name), ("role", exp.role or "not given"), ("model id", t.model_id or "not reported"),
        ("score semantics", t.score_semantics or "not reported"), ("method / index", f"{exp.method} {exp.index}"),
        ("budget", f"{exp.budget} {exp.budget_unit}"), ("seed", exp.seed),
        ("masking", f"image baseline {masking.image_baseline}, blur radius {masking.blur_radius:g}, text mask "
                    f"{masking.text_mask!r}"),
        ("parameters", ", ".join(f"{k}={v}" for k, v in p.parameters.items()) or "none"),
        ("image", p.image_name or "not named"), ("image sha256", p.image_sha256 or "not recorded"),
        ("tool version", p.tool_version or "not recorded"),
        ("cost", f"{exp.cost:g} {exp.cost_unit}".strip()),
        ("usage", usage_line(exp.usage, estimate=exp.dry_run) or "the target reports no usage")]
    return _section("Provenance", _table(("", ""), rows), "provenance")


def explanation_page(exp: "Explanation", title: Optional[str] = None) -> str:
    """One explanation as a self-contained HTML page (see the module docstring); without ``exp.image`` the
    overlays are drawn on a grey canvas and the page says no photo was recorded."""
    rows, cols = exp.grid
    title = title or "MultiSHAP explanation"
    subtitle = (f"{_asked(exp)} · target {exp.target.name} · {rows}×{cols} patches × {len(exp.tokens)} tokens"
                f"{' · dry run: Φ is zeros' if exp.dry_run else ''}")
    heatmap, data = _heatmap(exp)
    pairs = (_pairs_table(f"top {TOP_PAIRS} synergy pairs",
                          strongest_pairs(exp.phi, exp.stderr, exp.tokens, cols, TOP_PAIRS, True))
             + _pairs_table(f"top {TOP_PAIRS} suppression pairs",
                            strongest_pairs(exp.phi, exp.stderr, exp.tokens, cols, TOP_PAIRS, False)))
    main = _section("Φ over the photo",
                    f'<div class="cols"><div>{heatmap}</div><div>{pairs}{_metrics(exp)}</div></div>', "heatmap")
    sections = [main, _answer(exp), _influence(exp), _stability(exp), _faithfulness(exp), _provenance(exp)]
    return _document(title, subtitle, [s for s in sections if s], data)


def dataset_page(report: "DatasetReport", title: Optional[str] = None) -> str:
    """A dataset run as a self-contained HTML page: MSR and SDR with their intervals, the splits, the rows, the
    failures and the usage summed over the rows."""
    title = title or "MultiSHAP dataset report"
    every = next((s for s in report.splits if s.name == "all"), None)
    if every is None:
        headline = _table(("", ""), [("MSR", report.msr), ("SDR", report.sdr)])
    else:
        level = f"{every.level:.0%}"
        headline = _table(("", ""), [(f"MSR [{level} CI]", _ci(every.msr, every.msr_ci)),
                                     (f"SDR [{level} CI]", _ci(every.sdr, every.sdr_ci)),
                                     ("instances", every.count)])
    splits = _table(("split", "count", "MSR [CI]", "SDR [CI]", "F_syn [CI]", "F_syn over"),
                    [(s.name, s.count, _ci(s.msr, s.msr_ci), _ci(s.sdr, s.sdr_ci), _ci(s.f_syn, s.f_syn_ci),
                      s.f_syn_count) for s in report.splits], cls="splits")
    rows = _table(("id", "role", "model answer", "correct", "R", "F_syn", "evaluations"),
                  [(r["id"], r.get("role") or "", r.get("model_answer"), r.get("correct"), r["synergy_ratio"],
                    r.get("f_syn"), r["evaluations"]) for r in report.rows], cls="rows")
    failed = (_table(("id", "error"), [(f["id"], f["error"]) for f in report.failed], cls="failures")
              if report.failed else "<p>none</p>")
    usage = usage_line(report.usage) or "the targets report no usage"
    subtitle = f"{len(report.rows)} instances explained, {len(report.failed)} failed"
    return _document(title, subtitle, [
        _section("Headline", headline, "headline"),
        _section("Splits, with percentile-bootstrap intervals", splits, "splits"),
        _section("Instances", rows, "rows"), _section("Failures", failed, "failures"),
        _section("Usage (all rows)", f"<p>{escape(usage)}</p>", "usage")])


def write_page(html: str, path: Union[str, os.PathLike]) -> Path:
    """Write ``html`` to ``path`` as UTF-8 through a temporary file and an atomic replace, so a reader never sees
    half a page; the file keeps the mode of the one it replaces (else rw-r--r--)."""
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
