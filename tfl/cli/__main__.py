"""`python -m tfl.cli ...`: the `tfl` command."""

import sys

from tfl.cli import main

sys.exit(main())
