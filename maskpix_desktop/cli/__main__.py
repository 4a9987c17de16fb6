"""``python -m maskpix_desktop.cli`` (torchrun / accelerate launch entry)."""

import sys

from maskpix_desktop.cli import main

sys.exit(main())
