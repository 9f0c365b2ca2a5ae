import sys

from caducee.cli import main

sys.exit(main())
