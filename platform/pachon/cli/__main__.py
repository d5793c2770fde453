"""``python -m pachon.cli`` runs the ``pachon`` command."""

import sys

from pachon.cli.main import main

sys.exit(main())
