"""DVC stage `data@<task>`: see `alap data --help`."""

from stages import run

if __name__ == "__main__":
    run("data")
