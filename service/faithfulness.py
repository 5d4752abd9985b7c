"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.faithfulness`."""

from multishap.service.math.faithfulness import (
    MacroGameSII,
    SynergisticFaithfulness,
    UnimodalCurves,
    UnimodalFaithfulness,
    alpha_grid,
    macro_game_sii,
    macro_players,
    synergistic_faithfulness,
    top_set,
    top_sets,
    unimodal_faithfulness,
)

__all__ = ['MacroGameSII', 'SynergisticFaithfulness', 'UnimodalCurves', 'UnimodalFaithfulness', 'alpha_grid', 'macro_game_sii', 'macro_players', 'synergistic_faithfulness', 'top_set', 'top_sets', 'unimodal_faithfulness']
