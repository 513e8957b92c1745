import sys

from mpcrt.cli import main

sys.exit(main())
