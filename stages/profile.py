"""DVC stage `profile`: see `alap profile --help`."""

from stages import run

if __name__ == "__main__":
    run("profile")
