"""DVC stage `prune`: see `alap prune --help`."""

from stages import run

if __name__ == "__main__":
    run("prune")
