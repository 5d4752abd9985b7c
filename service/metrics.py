"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.metrics`."""

from multishap.service.math.metrics import *  # noqa: F401,F403
from multishap.service.math.metrics import __all__  # noqa: F401
