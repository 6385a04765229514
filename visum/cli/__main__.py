import sys

from visum.cli import main

sys.exit(main())
