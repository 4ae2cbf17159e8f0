"""Allow ``python -m migrate_cli``."""

from migrate_cli.cli.app import main

main()
