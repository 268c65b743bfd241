"""Allow ``python -m sanctum`` as an alias of the ``sanctum`` command."""

from sanctum.cli.main import main

main()
