"""`python -m utils.runner ...`: see `utils.runner`."""

import sys

from utils.runner.execute import main

sys.exit(main())
