"""``python -m store``: the same as the ``store`` command."""

import sys

from store.cli import main

sys.exit(main())
