"""Import shim: ``multishap.service.faithfulness``, where the README used to document it, now lives in
:mod:`multishap.service.math.faithfulness`; code written against the old path keeps working."""

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
