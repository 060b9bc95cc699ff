import sys

from medguna.cli import main

sys.exit(main())
