import sys

from speakerid.cli import main

sys.exit(main())
