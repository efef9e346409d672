"""DVC stages `bench@<task>` and `bench-report` (bench/dvc.yaml): see `alap bench --help`."""

from stages import run

if __name__ == "__main__":
    run("bench")
