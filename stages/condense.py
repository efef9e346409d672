"""DVC stage `condense`: see `alap condense --help`."""

from stages import run

if __name__ == "__main__":
    run("condense")
