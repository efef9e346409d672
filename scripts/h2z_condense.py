"""Issue 15, session 26: how horse2zebra's condensed network's validation FID moves during condensing.

Condenses a copy of a trained teacher (default: the benchmark's, bench/out/horse2zebra) with the condense stage's
own code (alap.steps.condense.condense_task) on the benchmark's data, validating every 20 steps, and prints the
validation FIDs and the kept step (condense.json's ``selected``).

    PYTHONPATH=.:scripts python scripts/h2z_condense.py OUT_DIR [KEY=VALUE ...]   # e.g. condense.sparsity_weight=0
"""

import json
import shutil
import sys
from pathlib import Path

import yaml
from h2z_diagnose import TASK, load_params

from alap.bench.params import BenchParams
from alap.bench.run import bench_params
from alap.paths import TaskPaths
from alap.steps.condense import condense_task

TEACHER = Path("bench/out/horse2zebra")


def main() -> None:
    out = Path(sys.argv[1])
    params = load_params([f"tasks.{TASK}.condense.validate_every=20", *sys.argv[2:]])
    params = bench_params(params, BenchParams.model_validate(yaml.safe_load(open("bench/params.yaml"))), TASK)
    paths = TaskPaths(TASK, models=out / "models", reports=out / "reports", state=out / "state")
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    for name in ("teacher", "teacher_aux"):
        shutil.copyfile(TEACHER / f"{name}.pt", getattr(paths, name))
    record = condense_task(params, TASK, paths, Path(".torch"))
    print(json.dumps({"overrides": sys.argv[2:], "selected": record["selected"]}))


if __name__ == "__main__":
    main()
