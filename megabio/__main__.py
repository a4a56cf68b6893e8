import sys

from megabio.cli import main

sys.exit(main())
