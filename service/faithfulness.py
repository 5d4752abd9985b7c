"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.faithfulness`."""

from multishap.service.math.faithfulness import *  # noqa: F401,F403
from multishap.service.math.faithfulness import __all__  # noqa: F401
