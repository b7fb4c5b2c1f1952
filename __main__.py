import sys

from memarl.cli import main

sys.exit(main())
