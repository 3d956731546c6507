"""Entry point for ``python -m segcli``."""

from segcli.cli import main

if __name__ == "__main__":
    main()
