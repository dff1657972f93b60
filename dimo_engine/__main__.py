"""`python -m dimo_engine` is the `dimo` command."""

import sys

from dimo_engine.cli.main import main

sys.exit(main())
