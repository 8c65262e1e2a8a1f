import sys

from pvr.cli import main

sys.exit(main())
