"""The synthetic adapter's backend: a game with known truth, picked by the instance.

Text players are the whitespace-separated words of the text; image players the grid's
patches. ``parameters["family"]`` names the game family (default "mixed") and
``parameters["seed"]`` its seed (default: derived from the instance's content), so the
same request always gets the same answer from any replica.
"""

from __future__ import annotations

import hashlib

import numpy as np

from multishap.adapters.backend import DecodedInstance, ModelBackend, PreparedInstance
from multishap.service.rpc.errors import InvalidArgument, shown

from multishap.service.math.games import FAMILIES, MobiusGame, SmoothGame, make_game

DEFAULT_FAMILY = "mixed"


class SyntheticBackend(ModelBackend):
    """Scores coalitions with a deterministic synthetic game."""

    model_id = "multishap/synthetic"
    score_semantics = "synthetic game value (closed-form truth where the family has one)"
    parameters = {"family": f"game family: {', '.join(FAMILIES)}", "seed": "the game's seed, a whole number"}

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
