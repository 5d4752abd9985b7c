"""Import shim: the public API documented in the README moved to :mod:`multishap.service.math.estimators`."""

from multishap.service.math.estimators import *  # noqa: F401,F403
from multishap.service.math.estimators import __all__  # noqa: F401
