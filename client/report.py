"""Console summaries and output files for explanations (used by the CLI and the demo)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .explanation import Explanation, Usage
from .labels import strongest_pairs
from .provenance import output_stem


def usage_line(usage: Usage, estimate: bool = False) -> str:
    """One line on what scoring cost (or would cost): endpoint requests, or a dual encoder's encoder passes;
    empty for targets that report neither."""
    if usage.image_encodes or usage.text_encodes:
        return f"encoded {usage.image_encodes} masked images and {usage.text_encodes} masked texts"
    if not (usage.requests or usage.cache_hits or usage.prompt_tokens):
        return ""
    verb = "would send" if estimate else "sent"
    line = (f"{verb} {usage.requests} endpoint requests ({usage.cache_hits} answered from cache"
            f"{'' if estimate else f', {usage.retries} retries'}), {usage.prompt_tokens} prompt + "
            f"{usage.completion_tokens} completion tokens{' (estimated)' if estimate else ''}")
    if usage.cost:
        line += f", cost {usage.cost:.4f}"
    if usage.bounded:
        line += f"; {usage.bounded} scores are bounds (target not among the top log-probabilities)"
    return line


def dry_run_summary(exp: Explanation) -> str:
    """What an explanation would score and cost, for ``explain --dry-run``."""
    return "\n".join([
        f"dry run: {exp.method} {exp.index} would score {exp.evaluations} coalitions of budget {exp.budget} "
        f"on {exp.target.name} ({exp.target.model_id})",
        usage_line(exp.usage, estimate=True) or "the target reports no cost (a local model or the synthetic game)",
    ])


def _strongest(exp: Explanation, synergy: bool) -> str:
    pairs = strongest_pairs(exp.phi, exp.stderr, exp.tokens, exp.grid[1], 1, synergy)
    return f"{pairs[0].label} (Φ = {pairs[0].phi:+.4g})" if pairs else "none"


def summary(exp: Explanation) -> str:
    """What was explained, the metrics table and the strongest synergy and suppression, as text."""
    rows, cols = exp.grid
    p = exp.provenance
    lines = [
        *([] if p.text is None else [f"text {p.text!r}, answer {p.answer!r}"
                                     f"{f', image {p.image_name}' if p.image_name else ''}"]),
        f"target {exp.target.name} ({exp.target.model_id}): {exp.target.score_semantics}",
        f"{exp.method} {exp.index}: {exp.evaluations} coalitions of budget {exp.budget}"
        f"{f' {exp.cost_unit}' if exp.budget_unit == 'cost' and exp.cost_unit else ''}, {exp.seconds:.2f} s, seed {exp.seed}",
        *([f"cost: {exp.cost:g} {exp.cost_unit}"] if exp.cost_unit else []),
        *([f"target standard error {exp.target_stderr:g}: "
           f"{'reached' if exp.target_stderr_reached else 'not reached within the budget'}"] if exp.target_stderr else []),
        f"grid {rows}x{cols} patches (r0c0 top left) x {len(exp.tokens)} tokens: {' | '.join(exp.tokens)}",
        *([line] if (line := usage_line(exp.usage)) else []),
        "",
        "| metric | value |",
        "|---|---|",
        f"| total Σ|Φ| | {exp.metrics.total:.4g} |",
        f"| synergy | {exp.metrics.synergy:.4g} |",
        f"| suppression | {exp.metrics.suppression:.4g} |",
        f"| synergy ratio | {exp.metrics.synergy_ratio:.3f} |",
        f"| v(full) / v(empty) | {exp.v_full:.4g} / {exp.v_empty:.4g} |",
        f"| image×text interaction | {exp.modality_interaction:+.4g} |",
        f"| largest standard error | {float(np.max(exp.stderr)):.3g} |",
        "",
        f"strongest synergy:     {_strongest(exp, True)}",
        f"strongest suppression: {_strongest(exp, False)}",
        *audit_lines(exp),
    ]
    return "\n".join(lines)


def audit_lines(exp: Explanation) -> list[str]:
    """What an audit added to the explanation, one line each: the model's answer, modality influence, F_syn and
    stability (none when not asked for)."""
    lines = []
    if (a := exp.answer) is not None:
        if a.error:
            lines.append(f"model answer: none ({a.error})")
        else:
            verdict = f", {'correct' if a.correct else 'incorrect'} against {a.ground_truth!r}" if a.judged else ""
            lines.append(f"model answer: {a.answer!r} ({a.how}){verdict}")
    if (i := exp.influence) is not None:
        lines.append(f"modality influence: image on text {i.image_on_text:.3f}, text on image {i.text_on_image:.3f}"
                     f"{', redundant (one modality alone gives v(full))' if i.redundancy_flag else ''} "
                     f"({i.evaluations} coalitions{', exact' if i.exact else ''})")
    if (f := exp.faithfulness) is not None:
        lines.append(f"F_syn of these scores: {f.f_syn:.4f} (insertion {f.f_ins:.4f}, deletion {f.f_del:.4f}, "
                     f"{f.evaluations} coalitions)")
    if (st := exp.stability) is not None:
        per = ", ".join(f"{name} {p.rank_correlation:.3f}/{p.topk_overlap:.2f}"
                        for name, p in st.per_perturbation.items())
        lines.append(f"stability (rank correlation / top-{st.top_k} overlap over {st.kept_entries} of "
                     f"{st.total_entries} resolved entries): {st.rank_correlation:.3f} / {st.topk_overlap:.2f}; {per}")
    return [""] + lines if lines else []


def save(exp: Explanation, out_dir: Path, stem: Optional[str] = None) -> tuple[Path, Path]:
    """Write ``<stem>-explanation.json`` and ``<stem>-heatmap.png``; the stem defaults to :func:`output_stem`'s,
    one per instance and target, so two texts on one image never overwrite each other. Returns both paths."""
    stem = output_stem(exp) if stem is None else stem
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}-explanation.json"
    png_path = out_dir / f"{stem}-heatmap.png"
    json_path.write_text(exp.to_json(indent=1))
    exp.plot().savefig(png_path, dpi=110, bbox_inches="tight")
    return json_path, png_path
