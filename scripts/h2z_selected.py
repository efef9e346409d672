"""Issue 15, session 19: the CycleGAN teacher kept at its best validation FID. Trains horse2zebra with the train
stage's own code (alap.train.train_teacher) and scores, on the test split against the real B images, both the kept
generator and the last step's (from the resume state), next to the identity baseline.

    OMP_NUM_THREADS=1 python scripts/h2z_selected.py OUT_DIR [KEY=VALUE ...]   # e.g. seed=2

Reads params.yaml (with the overrides) and data/horse2zebra; prints one JSON line and writes OUT_DIR/grid.png.
"""

import json
import sys
from pathlib import Path

import torch
from h2z_diagnose import TASK, evaluate, load_params, save_test_grid
from torch.utils.data import DataLoader

from alap import io
from alap.metrics.fid import InceptionFeatures
from alap.metrics.lpips_metric import LpipsMetric
from alap.models import load_checkpoint
from alap.paths import TaskPaths
from alap.task import Task
from alap.train import train_teacher


def main() -> None:
    out = Path(sys.argv[1])
    params = load_params(sys.argv[2:])
    paths = TaskPaths(TASK, models=out / "models", reports=out / "reports", state=out / "state")
    train_teacher(params, TASK, paths, Path(".torch"))
    record = json.loads(paths.train_metrics.read_text())
    kept, _ = load_checkpoint(paths.teacher, map_location="cpu")
    last, _ = load_checkpoint(paths.teacher, map_location="cpu")
    (state,) = paths.state.rglob("train-*.pt")
    last.load_state_dict(io.load_weights(state, "a resume state")["states"]["G"])
    test_set = Task.from_params(params, TASK).dataset("test", for_eval=True)
    device = torch.device("cpu")
    inception = InceptionFeatures(Path(".torch"), device)
    lpips = LpipsMetric(params.evaluate.lpips_net, Path(".torch"), device)
    real = torch.cat([inception.features(b["B"]) for b in DataLoader(test_set.real_targets(), 16)])
    scores = {name: evaluate(g, test_set, inception, lpips, real) for name, g in (("kept", kept), ("last", last))}
    save_test_grid(kept, test_set, out / "grid.png")
    identity = record["fid_identity"]
    ratios = {f"{name}_ratio": s["fid"] / identity for name, s in scores.items()}
    print(
        json.dumps(
            {"overrides": sys.argv[2:], "identity": identity, "selected": record["selected"], **scores, **ratios}
        )
    )


if __name__ == "__main__":
    main()
