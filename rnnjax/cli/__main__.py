"""``python -m rnnjax.cli``: the ``rnnjax`` command."""

import sys

from rnnjax.cli.main import main

sys.exit(main())
