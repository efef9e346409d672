"""DVC stage `train@<task>`: see `alap train --help`."""

from stages import run

if __name__ == "__main__":
    run("train")
