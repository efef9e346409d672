"""DVC stage `report`: see `alap report --help`."""

from stages import run

if __name__ == "__main__":
    run("report")
