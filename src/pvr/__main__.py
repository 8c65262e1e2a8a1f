from pvr.cli import run

run()
