"""``python -m weekly_mailer``."""

from weekly_mailer.cli import main

main(prog_name="weekly-mailer")
