"""`python -m partc` runs the CLI."""

import sys

from partc.cli import main

sys.exit(main())
