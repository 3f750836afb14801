"""`python -m movierec.cli`: the `movierec` command (the tests run it in a subprocess this way)."""

from movierec.cli import main

main()
