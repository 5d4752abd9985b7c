"""Results as pandas DataFrames for notebooks; pandas is optional and imported only here, when asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .labels import patch_label

if TYPE_CHECKING:
    import pandas

    from .explanation import Explanation, FaithfulnessReport


def _pandas():
    try:
        import pandas
    except ImportError as err:
        raise ImportError("to_dataframe() needs pandas: pip install 'multishap[notebook]'") from err
    return pandas


def explanation_frame(exp: "Explanation") -> "pandas.DataFrame":
    """Phi in long format: one row per (patch, token) with row, col, patch (``r1c2``), token_index, token, phi
    and stderr, patches row-major and tokens in order within each patch."""
    pd = _pandas()
    cols = exp.grid[1]
    patches, tokens = exp.phi.shape
    patch = np.repeat(np.arange(patches), tokens)
    token = np.tile(np.arange(tokens), patches)
    return pd.DataFrame({
        "row": patch // cols, "col": patch % cols, "patch": [patch_label(int(i), cols) for i in patch],
        "token_index": token, "token": [exp.tokens[j] for j in token],
        "phi": exp.phi.ravel(), "stderr": exp.stderr.ravel(),
    })


def faithfulness_frame(report: "FaithfulnessReport") -> "pandas.DataFrame":
    """The faithfulness curves, one row per α: alpha, insertion, deletion, macro_game when it was computed, and
    the unimodal curves (visual_insertion, ..., text_deletion) when the report has them."""
    pd = _pandas()
    columns = {"alpha": report.alphas, "insertion": report.curve_ins, "deletion": report.curve_del}
    if report.macro_per_step is not None:
        columns["macro_game"] = report.macro_per_step
    for name, modality in (("visual", report.visual), ("text", report.text)):
        if modality.curve_ins:
            columns[f"{name}_insertion"], columns[f"{name}_deletion"] = modality.curve_ins, modality.curve_del
    return pd.DataFrame(columns)
