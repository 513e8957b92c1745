"""`python -m mpcrt`: the command line (mpcrt.launch.cli), the one mpcrt module that imports launch."""
import sys

from mpcrt.launch.cli import main

sys.exit(main())
