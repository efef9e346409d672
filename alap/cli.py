"""The ``alap`` command: every verb a pipeline stage runs, usable without DVC.

DVC stages (``python -m stages.<verb>``) and users call the same verbs, so there is one code path per step.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence

from alap.logs import setup_logging
from alap.paths import DEFAULT_TORCH_HOME

log = logging.getLogger("alap")

PROFILES_DIR = Path("configs")


def _params(args: argparse.Namespace):
    from alap.config import load_params

    return load_params(args.params)


def cmd_use_profile(args: argparse.Namespace) -> None:
    """Copy a ready profile over params.yaml after validating it."""
    from alap.config import load_params

    source = PROFILES_DIR / f"{args.name}.yaml"
    if not source.is_file():
        known = sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))
        raise SystemExit(f"no profile {args.name!r} in {PROFILES_DIR}/ (known: {known})")
    load_params(source)
    from alap import io

    io.write_text(args.params, source.read_text())
    log.info("params file %s now holds profile %s", args.params, args.name)


def cmd_data(args: argparse.Namespace) -> None:
    from alap.pipeline import prepare_data

    prepare_data(_params(args), args.task)


def cmd_train(args: argparse.Namespace) -> None:
    from alap.train import train_teacher

    train_teacher(_params(args), args.task)


def cmd_condense(args: argparse.Namespace) -> None:
    from alap.pipeline import condense_task

    condense_task(_params(args), args.task)


def _point_dir(args: argparse.Namespace) -> Path:
    from alap.paths import TaskPaths

    return args.out or TaskPaths(args.task).point_dir(args.sparsity)


def cmd_prune(args: argparse.Namespace) -> None:
    from alap.pipeline import prune_point

    prune_point(_params(args), args.task, args.sparsity, _point_dir(args))


def cmd_distill(args: argparse.Namespace) -> None:
    from alap.pipeline import distill_point

    distill_point(_params(args), args.task, args.sparsity, _point_dir(args))


def _model_args(args: argparse.Namespace) -> tuple[str, float | None, Path | None]:
    """``--model teacher|condensed`` or ``--sparsity S [--out DIR]`` for a sweep point."""
    if args.sparsity is None:
        return args.model, None, None
    point_dir = _point_dir(args)
    return point_dir.name, args.sparsity, point_dir


def cmd_evaluate(args: argparse.Namespace) -> None:
    from alap.pipeline import evaluate_entry

    name, sparsity, point_dir = _model_args(args)
    evaluate_entry(_params(args), args.task, name, sparsity, args.torch_home, point_dir)


def cmd_profile(args: argparse.Namespace) -> None:
    from alap.pipeline import profile_entry

    name, _, point_dir = _model_args(args)
    profile_entry(_params(args), args.task, name, point_dir)


def cmd_weights(args: argparse.Namespace) -> None:
    from alap.metrics.weights import provision_weights, verify_weights

    record = provision_weights(args.torch_home)
    log.info("weights in %s: %s", args.torch_home, ", ".join(sorted(record.get("files", record))))
    verify_weights(args.torch_home)
    log.info("weights verified (LPIPS examples, Inception pool3)")


def cmd_report(args: argparse.Namespace) -> None:
    from alap.report.build import build_report

    written = build_report(args.reports, _params(args).run_tasks)
    log.info("report written: %s", ", ".join(str(p) for p in written.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alap", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default params.yaml)")
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, fn: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    verb("use-profile", cmd_use_profile, "validate configs/NAME.yaml and copy it to the params file").add_argument(
        "name", help="profile name, e.g. demo or paper")
    verb("data", cmd_data, "generate a synthetic task or validate a folder dataset").add_argument("--task", required=True)
    verb("train", cmd_train, "train the teacher generator of a task").add_argument("--task", required=True)
    verb("condense", cmd_condense, "condense the trained teacher (sparsity penalty on channel scale factors)"
         ).add_argument("--task", required=True)
    for name, fn, text in [("prune", cmd_prune, "prune the condensed network at one sparsity setting"),
                           ("distill", cmd_distill, "distill a pruned student from its teacher")]:
        p = verb(name, fn, text)
        p.add_argument("--task", required=True)
        p.add_argument("--sparsity", type=float, required=True)
        p.add_argument("--out", type=Path, help="the sweep point's directory (default models/<task>/s<sparsity>)")
    for name, fn, text in [("evaluate", cmd_evaluate, "FID/KID/LPIPS/PSNR/SSIM/GMACs of one model on the test split"),
                           ("profile", cmd_profile, "latency of one model on each device x backend in params")]:
        p = verb(name, fn, text)
        p.add_argument("--task", required=True)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", choices=["teacher", "condensed"])
        which.add_argument("--sparsity", type=float, help="a sweep point (its student)")
        p.add_argument("--out", type=Path, help="the sweep point's directory (default models/<task>/s<sparsity>)")
        if name == "evaluate":
            p.add_argument("--torch-home", type=Path, default=DEFAULT_TORCH_HOME)
    verb("weights", cmd_weights, "provide and verify the FID Inception and LPIPS weights offline").add_argument(
        "--torch-home", type=Path, default=DEFAULT_TORCH_HOME)
    verb("report", cmd_report, "summary table, Pareto plots and HTML page from the evaluated models").add_argument(
        "--reports", type=Path, default=Path("reports"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except (ValueError, FileNotFoundError) as exc:
        # Bad input (params, data, checkpoints): the message names the file or key; a traceback adds nothing.
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
