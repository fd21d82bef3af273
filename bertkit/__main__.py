"""``python -m bertkit`` is the same as the ``bertkit`` command."""

from bertkit.cli import main

main()
