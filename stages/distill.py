"""DVC stage `distill`: see `alap distill --help`."""

from stages import run

if __name__ == "__main__":
    run("distill")
