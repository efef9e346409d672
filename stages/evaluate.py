"""DVC stage `evaluate`: see `alap evaluate --help`."""

from stages import run

if __name__ == "__main__":
    run("evaluate")
