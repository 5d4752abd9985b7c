"""Console summaries and output files for explanations (used by the CLI and the demo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .explanation import Explanation, Usage


def usage_line(usage: Usage, estimate: bool = False) -> str:
    """One line on what scoring cost (or would cost), empty for targets without a bill."""
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


def summary(exp: Explanation) -> str:
    """Metrics table and the strongest synergy and suppression, as text."""
    rows, cols = exp.grid
    i, j = np.unravel_index(np.argmax(exp.phi), exp.phi.shape)
    k, l = np.unravel_index(np.argmin(exp.phi), exp.phi.shape)
    lines = [
        f"target {exp.target.name} ({exp.target.model_id}): {exp.target.score_semantics}",
        f"{exp.method} {exp.index}: {exp.evaluations} coalitions of budget {exp.budget}, {exp.seconds:.2f} s, seed {exp.seed}",
        f"grid {rows}x{cols} patches x {len(exp.tokens)} tokens: {' | '.join(exp.tokens)}",
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
        f"strongest synergy:     patch r{i // cols}c{i % cols} with {exp.tokens[j]!r} (Φ = {exp.phi[i, j]:+.4g})",
        f"strongest suppression: patch r{k // cols}c{k % cols} with {exp.tokens[l]!r} (Φ = {exp.phi[k, l]:+.4g})",
    ]
    return "\n".join(lines)


def save(exp: Explanation, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>-explanation.json`` and ``<stem>-heatmap.png``; return their paths."""
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stem}-explanation.json"
    png_path = out_dir / f"{stem}-heatmap.png"
    json_path.write_text(exp.to_json(indent=1))
    fig = exp.plot()
    fig.savefig(png_path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return json_path, png_path
