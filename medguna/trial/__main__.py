"""`python -m medguna.trial [overrides]`: the same as `medguna trial [overrides]`."""

import sys

from medguna.trial.commands import main

if __name__ == "__main__":
    sys.exit(main())
