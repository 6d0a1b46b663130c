"""``python -m jaxlme``: the jaxlme command line."""

import sys

from .cli import main

sys.exit(main())
