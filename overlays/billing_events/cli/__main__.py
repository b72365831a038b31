"""``python -m billing_events.cli``: the same as the ``billing-events`` command."""

import sys

from ._main import main

sys.exit(main())
