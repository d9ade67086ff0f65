"""`python -m worker.cli`: the `lazada-worker` command without its installed script."""

import sys

from worker.cli.main import main

sys.exit(main())
