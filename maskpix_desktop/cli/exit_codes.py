"""Exit codes of ``maskpix-cli`` (documented in README and ``maskpix-cli --help``)."""

EXIT_OK, EXIT_ERROR, EXIT_MISSING = 0, 1, 2
