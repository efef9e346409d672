"""The DDP speed-up at the demo size: the demo profile's seg2face teacher trained by `alap train` with 1 process and
with 2 (torchrun, gloo, each process on half of every batch of 8), one after the other in one run, on this machine.

    python bench/ddp_speedup.py [--steps 500] [--nproc 2] [--device cpu] [--report reports/ddp.md]

``--device cuda`` measures the NCCL path instead: one GPU per process, so ``--nproc`` GPUs are needed.

Both runs use every core: the 1-process run with torch's default thread pool, each torchrun worker with one
thread (torchrun's OMP_NUM_THREADS=1). Reports the training time (alap.loop.fit's wall time, as
train_metrics.json records it) and the command's whole time (with the start of the processes), their ratios, the
machine's load average around each run, and whether the 1-process teacher is byte for byte the one dvc.lock
records (at the demo's 500 steps).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from alap import io
from alap.config import Params
from alap.steps.data import prepare_data

ROOT = Path(__file__).resolve().parents[1]
TASK = "seg2face"


def project(root: Path, data: Path, steps: int, nproc: int, device: str) -> Path:
    """A project folder whose params are the demo profile's, for seg2face alone, with ``nproc`` processes."""
    raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    raw.update(run_tasks=[TASK], dvc={"generate": [TASK], "train": [TASK], "import": {}}, dist={"nproc": nproc})
    raw["device"] = device
    raw["tasks"][TASK]["root"] = str(data)
    raw["tasks"][TASK]["train"]["steps"] = steps
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def timed_train(root: Path, threads: int | None) -> dict:
    """`alap train` in ``root`` (with ``threads`` intra-op threads, or torch's default); its fit time, whole time,
    test PSNR and the load average before and after."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "alap.cli", "-q", "train", "--task", TASK], cwd=root, env=env, check=True)
    command_s = time.perf_counter() - started
    metrics = json.loads((root / "models" / TASK / "train_metrics.json").read_text())
    return {
        "fit_s": metrics["wall_s"],
        "command_s": round(command_s, 1),
        "psnr_test": metrics["psnr_test"],
        "load": (round(load_before, 2), round(os.getloadavg()[0], 2)),
        "md5": hashlib.md5((root / "models" / TASK / "teacher.pt").read_bytes()).hexdigest(),
    }


def runs_to_measure(nproc: int) -> list[tuple[str, int, int | None]]:
    """(label, processes, threads per process): 1 process on torch's default threads, 1 process on 1 thread
    (what each DDP process gets: the DDP gain without the thread pool's), ``nproc`` processes (torchrun sets 1)."""
    return [
        (f"1 process, {torch.get_num_threads()} threads", 1, None),
        ("1 process, 1 thread", 1, 1),
        (f"{nproc} processes, 1 thread each", nproc, None),
    ]


def locked_teacher_md5() -> str | None:
    for stage in yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] == f"models/{TASK}/teacher.pt":
                return out["md5"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="teacher steps (the demo's: 500)")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (gloo) or cuda (NCCL, one GPU per process)")
    parser.add_argument("--report", type=Path, default=ROOT / "reports" / "ddp.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        raw = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
        raw["tasks"][TASK]["root"] = str(work / "data")
        prepare_data(Params.model_validate({**raw, "run_tasks": [TASK], "dvc": None}), TASK)
        runs = {}
        for label, nproc, threads in runs_to_measure(args.nproc):
            print(f"training: {label} ...", file=sys.stderr)
            root = project(work / label.replace(" ", "_"), work / "data", args.steps, nproc, args.device)
            runs[label] = timed_train(root, threads)
    one, one_thread, many = runs.values()
    locked = locked_teacher_md5() if args.steps == 500 and args.device == "cpu" else None
    backend = "NCCL" if args.device.startswith("cuda") else "gloo"
    gpus = f" and {torch.cuda.device_count()} GPUs" if args.device.startswith("cuda") else ""
    lines = [
        "# DDP speed-up at the demo size",
        "",
        f"The demo profile's {TASK} teacher (U-Net ngf 32, 64 px, batch 8, {args.steps} steps) trained by `alap train`",
        f"with 1 process and with {args.nproc} (torchrun, {backend}; each process on {8 // args.nproc} images of every "
        "batch of 8, BatchNorm synced), one after the other in one run of",
        "",
        f"    python bench/ddp_speedup.py --steps {args.steps} --nproc {args.nproc} --device {args.device}",
        "",
        f"on a machine with {os.cpu_count()} cores{gpus} and torch {torch.__version__}; the 1-process run uses "
        f"torch's default {torch.get_num_threads()} threads, each of the {args.nproc} processes 1 (torchrun's "
        "OMP_NUM_THREADS=1). Training time is alap.loop.fit's wall time; the command's time adds the start of the "
        "processes (torchrun, the process group). The load average (1 minute) counts every process on the machine.",
        "",
        "| run | training s | command s | test PSNR dB | load average before, after |",
        "|---|---|---|---|---|",
    ]
    for label, run in runs.items():
        lines.append(
            f"| {label} | {run['fit_s']:.1f} | {run['command_s']:.1f} | {run['psnr_test']:.2f} | "
            f"{run['load'][0]}, {run['load'][1]} |"
        )
    lines += [
        "",
        f"**Speed-up with {args.nproc} processes: {one['fit_s'] / many['fit_s']:.2f}x training "
        f"({one['command_s'] / many['command_s']:.2f}x command) over 1 process on torch's default threads; "
        f"{one_thread['fit_s'] / many['fit_s']:.2f}x training ({one_thread['command_s'] / many['command_s']:.2f}x "
        "command) over 1 process on 1 thread** (ratios of the times above). On a loaded machine a thread pool "
        "whose threads are descheduled waits for the slowest, so the first ratio also measures the load.",
    ]
    if locked is not None:
        same = "the same bytes as" if one["md5"] == locked else "NOT the bytes of"
        lines += ["", f"The 1-process teacher ({torch.get_num_threads()} threads) is {same} the one dvc.lock records."]
    io.write_text(args.report, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
