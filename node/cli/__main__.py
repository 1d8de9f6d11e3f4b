"""`python -m communs.node.cli` runs the `communs` command."""

from communs.node.cli.main import main

main()
