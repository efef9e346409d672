"""DVC stage `bench-latency` (bench/dvc.yaml): see `alap bench-latency --help`."""

from stages import run

if __name__ == "__main__":
    run("bench-latency")
