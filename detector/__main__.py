"""``python -m detector`` does what ``python main.py`` does."""

import sys

from detector.cli import main

sys.exit(main())
