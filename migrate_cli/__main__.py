"""Allow ``python -m migrate_cli``."""

from migrate_cli.cli import main

main()
