"""Entry point: `python -m trainer train|eval|export` (see trainer/cli.py)."""

import sys

from trainer.cli import main

sys.exit(main())
