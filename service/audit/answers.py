"""Judging a model's own answer against a ground truth (correctness capture).

Both sides are normalised the way VQA scoring does, simplified: Unicode NFKC, lower case, white space
collapsed, punctuation at either end stripped, and one leading article ("a", "an", "the") dropped. The answer
is correct when the normalised strings are equal. A dual encoder's answer is one of the candidate captions,
so a caption given as ground truth matches itself exactly.
"""

from __future__ import annotations

import string
import unicodedata

_ARTICLES = ("a ", "an ", "the ")
_EDGE = string.punctuation + "\u2018\u2019\u201c\u201d\u00bf\u00a1"


def normalise_answer(text: str) -> str:
    """``text`` as compared: NFKC, lower case, one space between words, no edge punctuation or leading article."""
    out = " ".join(unicodedata.normalize("NFKC", text).lower().split()).strip(_EDGE).strip()
    for article in _ARTICLES:
        if out.startswith(article):
            out = out[len(article):].strip()
            break
    return out


def is_correct(answer: str, ground_truth: str) -> bool:
    """Whether ``answer`` equals ``ground_truth`` once both are normalised (an empty answer never does)."""
    normalised = normalise_answer(answer)
    return bool(normalised) and normalised == normalise_answer(ground_truth)
