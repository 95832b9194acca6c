"""Real-time facial emotion recognition. Run ``python main.py --help``."""

import sys

from detector.cli import main

if __name__ == "__main__":
    sys.exit(main())
