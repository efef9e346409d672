"""Issue 14's demo check: the demo seg2face task's condensed network (models/seg2face/condensed.pt, as
`dvc repro condense@seg2face` makes it) pruned with prune.target latency to half the teacher's cpu-t2 ONNX
Runtime p50, and the student re-measured. Prints the prune report's latency record.

    python scripts/latency_demo_check.py 1.4294654993136646 OUT_DIR   # the teacher's p50 from its latency.json
    python scripts/latency_demo_check.py now OUT_DIR                  # the teacher timed now, under today's load
"""

import json
import sys
from pathlib import Path

import yaml

from alap.config import Params
from alap.paths import TaskPaths
from alap.profile.candidates import CandidateTimer
from alap.steps.prune import prune_point
from alap.task import Task

raw = yaml.safe_load(open("configs/demo.yaml"))
raw.update(dvc=None, sweep={"sparsities": []})
raw["prune"].update(target="latency", latency={"device": "cpu-t2", "p50_ms": 1.0})
params = Params.model_validate(raw)
task = Task.from_params(params, "seg2face")
example = task.example_inputs("cpu")
if sys.argv[1] == "now":  # the teacher timed now, under the same load as the candidates
    teacher, _ = task.load_generator(TaskPaths("seg2face").teacher, "cpu")
    timer = CandidateTimer(params.prune.latency, tuple(example.shape[1:]))
    teacher_p50 = timer.measure(teacher)["p50_ms"]
else:
    teacher_p50 = float(sys.argv[1])
raw["prune"]["latency"]["p50_ms"] = round(teacher_p50 / 2, 4)
params = Params.model_validate(raw)
out = Path(sys.argv[2])
try:
    report = prune_point(params, "seg2face", None, out, TaskPaths("seg2face"))
except ValueError as err:
    print(json.dumps({"teacher_p50_ms": teacher_p50, "budget_ms": teacher_p50 / 2, "error": str(err)}, indent=2))
    sys.exit(0)
plan = report["latency"]
keys = (
    "p50_ms_target",
    "p50_ms_unpruned",
    "p50_ms_planned",
    "p50_ms_student",
    "student_within_budget",
    "within_tolerance",
    "candidates_timed",
    "cache_hits",
)
summary = {k: plan[k] for k in keys}
summary.update(
    teacher_p50_ms=teacher_p50,
    gmacs_before=report["gmacs_before"],
    gmacs_after=report["gmacs_after"],
    channels_removed_fraction=report["channels_removed_fraction"],
)
print(json.dumps(summary, indent=2))
