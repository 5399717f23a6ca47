"""``python -m ript_core ...`` is the ``ript`` command."""

import sys

from ript_core.cli import main

sys.exit(main())
