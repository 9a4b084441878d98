"""``python -m sam_client``: the ``sam-client`` command line."""

import sys

from sam_client.cli import main

sys.exit(main())
