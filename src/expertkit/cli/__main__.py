"""`python -m expertkit.cli`: the same as the `expertkit` command."""

from expertkit.cli import main

if __name__ == "__main__":
    main()
