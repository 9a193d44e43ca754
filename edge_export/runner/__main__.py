"""``python -m edge_export.runner``: the ``lensline-edge`` console script."""

import sys

from edge_export.runner.cli import main

sys.exit(main())
