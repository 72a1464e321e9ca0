"""``python -m edgefuse.cli …``: the same as the ``edgefuse`` console script."""

import sys

from edgefuse.cli import main

sys.exit(main())
