"""``python -m maskpix_desktop.bench``: run the performance harness."""

import sys

from maskpix_desktop.bench import main

sys.exit(main())
