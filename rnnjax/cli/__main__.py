"""``python -m rnnjax.cli``: the ``rnnjax`` command."""

import sys

from rnnjax.cli.command import main

sys.exit(main())
