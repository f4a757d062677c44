"""`python -m bot ...` is the same as the `trialbot` command."""

from bot.cli import main

main()
