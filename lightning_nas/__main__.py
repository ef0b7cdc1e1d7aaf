"""``python -m lightning_nas`` is the ``lightning-nas`` command."""

import sys

from lightning_nas.cli import main

sys.exit(main())
