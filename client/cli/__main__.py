"""``python -m multishap.client.cli``: the ``multishap`` command."""

import sys

from . import main

sys.exit(main())
