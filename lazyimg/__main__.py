"""``python -m lazyimg`` runs the command line."""

import sys

from lazyimg.cli import main

sys.exit(main())
