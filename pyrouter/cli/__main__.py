"""``python -m pyrouter.cli``."""

import sys

from . import main

sys.exit(main())
