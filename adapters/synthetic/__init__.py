"""The synthetic adapter: the closed-form games of :mod:`multishap.service.math.games` behind the Scorer contract."""
