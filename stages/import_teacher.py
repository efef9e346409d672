"""DVC stage `import@<task>`: see `alap import-teacher --help`."""

from stages import run

if __name__ == "__main__":
    run("import-teacher")
