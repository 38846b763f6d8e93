from nmt.cli import run

run()
