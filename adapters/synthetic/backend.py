"""The synthetic adapter's backend: a game with known truth, picked by the instance.

Text players are the whitespace-separated words of the text; image players the grid's
patches. ``parameters["family"]`` names the game family (default "mixed") and
``parameters["seed"]`` its seed (default: derived from the instance's content), so the
same request always gets the same answer from any replica. A game has no answer of its own:
``parameters["answer"]`` gives the instance a known one, for testing the Answer RPC.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from multishap.adapters.backend import (AnswerResult, DecodedInstance, ModelBackend, PreparedInstance, ScoreCall,
                                        argmax_answer)
from multishap.service.rpc.errors import InvalidArgument, Unimplemented, shown

from multishap.service.math.games import FAMILIES, MobiusGame, SmoothGame, make_game

DEFAULT_FAMILY = "mixed"


class SyntheticBackend(ModelBackend):
    """Scores coalitions with a deterministic synthetic game."""

    model_id = "multishap/synthetic"
    score_semantics = "synthetic game value (closed-form truth where the family has one)"
    parameters = {"family": f"game family: {', '.join(FAMILIES)}", "seed": "the game's seed, a whole number",
                  "answer": "the instance's known answer, which Answer returns"}

    def prepare(self, instance: DecodedInstance) -> PreparedInstance[MobiusGame | SmoothGame]:
        tokens = instance.text.split()
        if not tokens:
            raise InvalidArgument("the text has no words: the synthetic game needs at least one token")
        family = instance.parameters.get("family", DEFAULT_FAMILY)
        if family not in FAMILIES:
            raise InvalidArgument(f"unknown game family {shown(family)}; choose one of {', '.join(FAMILIES)}")
        seed_text = instance.parameters.get("seed")
        if seed_text is None:
            seed = int.from_bytes(hashlib.sha256(instance.key.encode()).digest()[:4], "big")
        elif seed_text.isascii() and seed_text.isdigit():
            seed = int(seed_text)
        else:
            raise InvalidArgument(f"parameter seed must be a non-negative integer; got {shown(seed_text)}")
        game = make_game(family, instance.rows * instance.cols, len(tokens), seed)
        return PreparedInstance(instance, tokens, state=game)

    def forward(self, instance: PreparedInstance[MobiusGame | SmoothGame], masks: np.ndarray) -> np.ndarray:
        return instance.state(masks)

    def answer(self, instance: PreparedInstance, candidates: Sequence[str], call: ScoreCall) -> AnswerResult:
        """The instance's ``answer`` parameter; with candidates, each scores 1.0 when it equals that answer, else
        0.0, and the highest wins. Without the parameter: Unimplemented (a game cannot answer)."""
        known = instance.decoded.parameters.get("answer")
        if known is None:
            raise Unimplemented("this target cannot answer: a synthetic game has an answer only when the "
                                "instance's parameter 'answer' gives one")
        if candidates:
            return argmax_answer(candidates, [float(c == known) for c in candidates])
        return AnswerResult(known, how="the instance's answer parameter")
