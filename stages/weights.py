"""DVC stage `weights`: see `alap weights --help`."""

from stages import run

if __name__ == "__main__":
    run("weights")
