"""`python -m agent` is the `syncwatch` command."""

from agent.cli import main

main()
