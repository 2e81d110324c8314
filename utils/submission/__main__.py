"""`python -m utils.submission package|check ...`: see `utils.submission`."""

import sys

from utils.submission.export import main

sys.exit(main())
