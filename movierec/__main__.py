"""`python -m movierec`: the `movierec` command."""

from movierec.cli import main

main()
