"""The ``alap`` command: every verb a pipeline stage runs, usable without DVC.

DVC stages (``python -m stages.<verb>``) and users call the same verbs, so there is one code path per step.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from alap import io
from alap.errors import UserError, is_user_error, message
from alap.lock import output_lock
from alap.logs import setup_logging
from alap.paths import DEFAULT_STATE, DEFAULT_TORCH_HOME, LATENCY_CACHE, TaskPaths

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
        raise UserError(f"no profile {args.name!r} in {PROFILES_DIR}/ (known: {known})")
    io.check_output(args.params)
    load_params(source)
    io.write_text(args.params, source.read_text())
    log.info("params file %s now holds profile %s", args.params, args.name)


def cmd_data(args: argparse.Namespace) -> None:
    from alap.steps.data import prepare_data

    prepare_data(_params(args), args.task)


def _writing(folder: Path, what: str):
    """The one-writer lock of an output folder (alap.lock), taken after the folder was checked writable. In a
    multi-process run the launching process holds it (alap/launch.py), so its workers take none."""
    from alap.launch import launched

    folder = io.check_output(folder, folder=True)
    return contextlib.nullcontext() if launched() else output_lock(DEFAULT_STATE, folder, what)


def _writing_task(args: argparse.Namespace):
    """train, import-teacher and condense write the task's model folder: one of them at a time per task."""
    return _writing(TaskPaths(args.task).model_dir, f"task {args.task}")


def _distributed(args: argparse.Namespace, params, work: Callable[[], object]) -> object:
    """Run a training verb's ``work`` here, or as ``params.dist.nproc`` torchrun workers (alap/launch.py)."""
    from alap.launch import run_distributed

    return run_distributed(params.dist, params.device, args.argv, work)


def cmd_train(args: argparse.Namespace) -> None:
    from alap.train import train_teacher

    params = _params(args)
    with _writing_task(args):
        _distributed(args, params, lambda: train_teacher(params, args.task))


def cmd_import_teacher(args: argparse.Namespace) -> None:
    from alap.steps.teacher import import_teacher

    with _writing_task(args):
        import_teacher(_params(args), args.task)


def cmd_condense(args: argparse.Namespace) -> None:
    from alap.steps.condense import condense_task

    io.check_output(TaskPaths(args.task).report_dir, folder=True)
    params = _params(args)
    with _writing_task(args):
        _distributed(args, params, lambda: condense_task(params, args.task))


def _point_dir(args: argparse.Namespace) -> Path:
    """``--out``, or the point's folder in the DVC layout (models/<task>/s0.75, models/<task>/cpu-t2-33ms)."""
    if args.out:
        return args.out
    paths = TaskPaths(args.task)
    return paths.model_dir / args.latency if args.latency else paths.point_dir(args.sparsity)


def _point_sparsity(args: argparse.Namespace) -> float:
    """A sparsity point's own sparsity, or the one a latency point's prune reached (alap.points)."""
    from alap.points import recorded_sparsity

    return recorded_sparsity(_point_dir(args)) if args.latency else args.sparsity


def _writing_point(args: argparse.Namespace):
    """prune and distill write a sweep point's folder: different points of a task may run side by side."""
    point = args.latency or f"sparsity {args.sparsity}"
    return _writing(_point_dir(args), f"task {args.task}, {point}")


def cmd_prune(args: argparse.Namespace) -> None:
    from alap.steps.prune import prune_point

    params = _params(args)
    if args.latency:  # its budget: one of sweep.latency.points, refused before the folder is touched
        params = params.at_latency_point(args.latency)
    with _writing_point(args):
        prune_point(params, args.task, args.sparsity, _point_dir(args))


def cmd_distill(args: argparse.Namespace) -> None:
    from alap.steps.distill import distill_point

    params = _params(args)
    with _writing_point(args):
        sparsity = _point_sparsity(args)
        _distributed(args, params, lambda: distill_point(params, args.task, sparsity, _point_dir(args)))


def _model_args(args: argparse.Namespace) -> tuple[str, Path | None]:
    """``--model teacher|condensed``, or ``--sparsity S`` / ``--latency NAME`` ``[--out DIR]`` for a sweep point:
    the report row's name and the point's folder (None for the teacher and the condensed network)."""
    if args.sparsity is None and args.latency is None:
        return args.model, None
    point_dir = _point_dir(args)
    return point_dir.name, point_dir


def _writing_model_report(args: argparse.Namespace, name: str):
    """evaluate and profile write one model's report folder (reports/<task>/<model>)."""
    return _writing(TaskPaths(args.task).report_dir / name, f"task {args.task}, model {name}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from alap.steps.evaluate import evaluate_entry

    name, point_dir = _model_args(args)
    sparsity = None if point_dir is None else _point_sparsity(args)
    with _writing_model_report(args, name):
        evaluate_entry(_params(args), args.task, name, sparsity, args.torch_home, point_dir)


def cmd_profile(args: argparse.Namespace) -> None:
    from alap.steps.profile import profile_entry

    name, point_dir = _model_args(args)
    with _writing_model_report(args, name):
        profile_entry(_params(args), args.task, name, point_dir)


def cmd_weights(args: argparse.Namespace) -> None:
    from alap.metrics.weights.provide import provision_weights
    from alap.metrics.weights.verify import verify_weights

    io.check_output(args.torch_home, folder=True)
    record = provision_weights(args.torch_home)
    log.info("weights in %s: %s", args.torch_home, ", ".join(sorted(record.get("files", record))))
    verify_weights(args.torch_home)
    log.info("weights verified (LPIPS examples, Inception pool3)")


def cmd_report(args: argparse.Namespace) -> None:
    from alap.metrics.names import LatencyKey
    from alap.report.build import build_report

    params = _params(args)
    gate = LatencyKey(params.promote.device, params.promote.backend)
    with _writing(args.reports, "report"):
        written = build_report(args.reports, params.run_tasks, gate, args.models)
    print("\n".join(str(p) for p in written.values()))


def cmd_import_generator(args: argparse.Namespace) -> None:
    """Match a foreign generator state dict to alap's U-Net/ResNet by structure and save it as a checkpoint."""
    from alap.models import import_generator

    io.check_output(args.out)
    _, meta = import_generator(
        args.pth,
        args.out,
        task=args.task,
        key=args.key,
        kind=args.kind,
        norm=args.norm,
        norm_affine=args.norm_affine,
        dropout=args.dropout,
    )
    log.info("imported %s: %s", args.pth, meta["reference_config"])
    print(args.out)


def cmd_compress(args: argparse.Namespace) -> None:
    """Compress a user's generator on a folder of the user's images, without DVC; print teacher vs student."""
    from alap.compress_own import CompressRequest, build_params, check_request, compress_own, results_table

    request = CompressRequest(
        teacher=args.teacher,
        data=args.data,
        out=args.out,
        layout=args.layout,
        key=args.key,
        reverse=args.reverse,
        dropout=args.dropout,
        sparsity=args.sparsity,
        macs_reduction=args.macs_x,
        latency_device=args.latency_device,
        p50_ms=args.p50_ms,
        latency_backend=args.latency_backend,
        latency_cache=args.latency_cache,
        load_size=args.load_size,
        crop_size=args.crop_size,
        params=args.params_file,
        condense_steps=args.condense_steps,
        distill_steps=args.distill_steps,
        batch_size=args.batch_size,
        device=args.device,
        torch_home=args.torch_home,
        task=args.task,
        nproc=args.processes,
    )
    check_request(request)  # here, once, before any worker starts
    results = _distributed(args, build_params(request), lambda: compress_own(request))
    if results is not None:
        print(results_table(results))


def cmd_promote(args: argparse.Namespace) -> None:
    """Gate with the params file's ``promote`` section; each flag given overrides its gate for this run."""
    from alap.promote import promote

    result = promote(args.task, _params(args).promote.with_overrides(**gate_overrides(args)))
    print(result.report())
    if result.champion is None:
        raise SystemExit(1)


def add_gate_flags(parser: argparse.ArgumentParser) -> None:
    """The promotion gates as flags, each overriding the params file's ``promote`` value when given: one set for
    ``alap promote`` and ``python -m flows.promote``."""
    parser.add_argument("--device", help="device whose latency gates, e.g. cpu-t2")
    parser.add_argument("--backend", help="torch or onnxruntime")
    parser.add_argument("--max-p50-ms", type=float)
    parser.add_argument("--max-fid-ratio", type=float)
    parser.add_argument("--max-lpips-teacher", type=float)
    parser.add_argument("--prefer", help="quality (lowest FID) or speed (lowest latency)")
    parser.add_argument("--precisions", nargs="+", help="precisions each version is judged at: fp32 and/or int8")


def gate_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The gate flags of :func:`add_gate_flags` as ``PromoteParams.with_overrides`` keywords (None: not given)."""
    names = ("device", "backend", "max_p50_ms", "max_fid_ratio", "max_lpips_teacher", "prefer", "precisions")
    return {name: getattr(args, name) for name in names}


def cmd_storage(args: argparse.Namespace) -> None:
    from alap import storage

    if args.create_bucket:
        created = storage.create_bucket(args.bucket, args.endpoint)
        log.info("bucket %s %s", storage.resolve_bucket(args.bucket), "created" if created else "already exists")
    info = storage.check_bucket(args.bucket, args.endpoint)
    log.info("bucket ok: %s", info)
    if args.configure_dvc:
        url = storage.configure_dvc_remote(".", url=f"s3://{info.bucket}/dvc", endpoint=args.endpoint)
        log.info("DVC remote 'storage' -> %s (in .dvc/config.local, default)", url)
    command = storage.mlflow_server_command("sqlite:///mlflow-server.db", info.bucket)
    print("MLflow server with artifacts on this bucket:\n  " + " ".join(command))


def cmd_services(args: argparse.Namespace) -> None:
    """Start, stop or show the team stack (alap.services.stack): PostgreSQL, S3, MLflow and Prefect on 127.0.0.1."""
    from alap.services import stack

    if args.action == "up":
        given = {name: getattr(args, f"{name}_port") for name in stack.ORDER}
        ports = stack.Ports(**{name: port for name, port in given.items() if port is not None})
        started = stack.up(args.dir, ports, args.bucket)
        print(stack.status_table(stack.status(started.folder)))
        print(f"point alap at it: source {started.env_path}")
    elif args.action == "down":
        stopped = stack.down(args.dir)
        log.info("stopped: %s", ", ".join(stopped) or "nothing was running")
    else:
        print(stack.status_table(stack.status(args.dir)))


def cmd_bench_latency(args: argparse.Namespace) -> None:
    """Time paper-size teachers and latency-planned students at 256 px, and score trained pipeline students in
    int8 against fp32 (bench/latency.yaml); write reports/latency.md."""
    from alap.bench.latency_params import load_latency_bench_params
    from alap.bench.latency_report import build_latency_report
    from alap.bench.paper_latency import bench_latency, int8_students, read_int8_students, read_rows, read_widths

    settings = load_latency_bench_params(args.settings)
    if not args.report_only:
        bench_latency(settings, args.teacher)
        if settings.int8_students:  # trained students of the pipeline: its params file defines their tasks
            int8_students(settings, _params(args), DEFAULT_TORCH_HOME)
    rows, widths, int8 = read_rows(settings), read_widths(settings), read_int8_students(settings)
    build_latency_report(rows, settings, list(settings.notes), widths, int8)
    log.info("latency report: %s", settings.report)


def cmd_bench(args: argparse.Namespace) -> None:
    """Benchmark ALAP against baselines and ablations at MACs budgets (bench/params.yaml), then the report."""
    from alap.bench.entry import bench
    from alap.bench.params import load_bench_params

    done = bench(
        _params(args),
        load_bench_params(args.bench_params),
        args.task,
        args.torch_home,
        run=not args.report_only,
        report=not args.no_report,
    )
    if "report" in done:
        log.info("benchmark report: %s", done["report"]["report"])


class _Parser(argparse.ArgumentParser):
    """argparse whose errors take the CLI's one error path (:func:`main`): one line, no usage block."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see {self.prog} --help)")


def _sparsity(text: str) -> float:
    """``--sparsity``, in range before any file is read."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number, expected 0 <= S < 1") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"{text} is out of range, expected 0 <= S < 1")
    return value


def _latency_point(text: str) -> str:
    """``--latency``: a latency point's name, ``<device>-<p50>ms``, checked before any file is read."""
    from alap.paths import parse_latency_point

    if parse_latency_point(text) is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected <device>-<p50>ms, e.g. cpu-t2-33ms")
    return text


def _point_args(p: argparse.ArgumentParser, which: argparse._MutuallyExclusiveGroup) -> None:
    """A sweep point: ``--sparsity S`` or ``--latency NAME`` (one of params' sweep.latency.points), and its folder."""
    which.add_argument("--sparsity", type=_sparsity, help="a sparsity point (0 <= S < 1)")
    which.add_argument(
        "--latency", type=_latency_point, help="a latency point of sweep.latency.points, e.g. cpu-t2-33ms"
    )
    p.add_argument("--out", type=Path, help="the point's directory (default models/<task>/s<sparsity> or <latency>)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="alap", description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default params.yaml)")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", "-q", action="store_true", help="log warnings and errors only")
    loudness.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log alap's debug messages too, and print the traceback of a user error",
    )
    sub = parser.add_subparsers(dest="verb", required=True)

    def verb(name: str, fn: Callable[[argparse.Namespace], None], help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    verb("use-profile", cmd_use_profile, "validate configs/NAME.yaml and copy it to the params file").add_argument(
        "name", help="profile name, e.g. demo or paper"
    )
    verb("data", cmd_data, "generate a synthetic task or validate a folder dataset").add_argument(
        "--task", required=True
    )
    verb("train", cmd_train, "train the teacher generator of a task").add_argument("--task", required=True)
    verb(
        "import-teacher",
        cmd_import_teacher,
        "import the teacher file named in tasks.<task>.teacher (instead of training one)",
    ).add_argument("--task", required=True)
    verb(
        "condense", cmd_condense, "condense the trained teacher (sparsity penalty on channel scale factors)"
    ).add_argument("--task", required=True)
    for name, fn, text in [
        ("prune", cmd_prune, "prune the condensed network at one sparsity or latency point"),
        ("distill", cmd_distill, "distill a pruned student from its teacher"),
    ]:
        p = verb(name, fn, text)
        p.add_argument("--task", required=True)
        _point_args(p, p.add_mutually_exclusive_group(required=True))
    for name, fn, text in [
        ("evaluate", cmd_evaluate, "FID/KID/LPIPS/PSNR/SSIM/GMACs of one model on the test split"),
        ("profile", cmd_profile, "latency of one model on each device x backend in params"),
    ]:
        p = verb(name, fn, text)
        p.add_argument("--task", required=True)
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", choices=["teacher", "condensed"])
        _point_args(p, which)
        if name == "evaluate":
            p.add_argument("--torch-home", type=Path, default=DEFAULT_TORCH_HOME)
    verb("weights", cmd_weights, "provide and verify the FID Inception and LPIPS weights offline").add_argument(
        "--torch-home", type=Path, default=DEFAULT_TORCH_HOME
    )
    p = verb("report", cmd_report, "summary table, Pareto plots and HTML page from the evaluated models")
    p.add_argument("--reports", type=Path, default=Path("reports"))
    p.add_argument(
        "--models",
        type=Path,
        default=Path("models"),
        help="the stages' models/ (teacher training and compression times for the notes)",
    )
    p = verb(
        "import-generator",
        cmd_import_generator,
        "turn a pix2pix U-Net / CycleGAN ResNet generator state dict (e.g. a reference latest_net_G.pth) into "
        "an alap checkpoint; kind, channels, widths and norm are read from its tensors",
    )
    p.add_argument("pth", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--task", required=True, help="task name recorded in the checkpoint")
    p.add_argument("--key", help="the network to take from a file that holds several, e.g. netG_A")
    p.add_argument("--kind", choices=["unet", "resnet"], help="check the kind read from the tensors")
    p.add_argument("--norm", choices=["batch", "instance"], help="check the norm read from the tensors")
    p.add_argument(
        "--affine",
        dest="norm_affine",
        action=argparse.BooleanOptionalAction,
        help="check whether the norm layers are affine",
    )
    p.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        help="trained with dropout (default: read from reference key names, else U-Net on, ResNet off)",
    )

    p = verb(
        "compress",
        cmd_compress,
        "compress your own generator on your own images, without DVC: import, "
        "condense, prune, distill, evaluate, profile and ONNX export into --out (resumes after a kill)",
    )
    p.add_argument("teacher", type=Path, help="the generator's weights, e.g. latest_net_G.pth")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="dataset folder: trainA/trainB/testA/testB (unpaired), "
        "train/A, train/B, test/... (paired), or a plain folder of input images",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created; a rerun resumes it)")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--sparsity", type=float, help="fraction of the teacher's MACs to remove (0 <= S < 1)")
    target.add_argument("--macs-x", type=float, help="times fewer MACs than the teacher, e.g. 8")
    target.add_argument(
        "--p50-ms",
        type=float,
        help="latency budget: the fewest channels removed whose measured median latency on --latency-device "
        "meets it (e.g. 33 for 30 frames/s)",
    )
    p.add_argument(
        "--latency-device",
        help="device the --p50-ms budget holds on: cpu-t<N> (N threads, e.g. cpu-t2) or cuda<K> "
        "(--device stays the device that trains)",
    )
    p.add_argument(
        "--latency-backend",
        choices=["onnxruntime", "onnxruntime-int8", "torch"],
        default="onnxruntime",
        help="runtime the --p50-ms budget holds in (default onnxruntime; onnxruntime-int8: its static int8 "
        "quantization, on a cpu-t<N> device)",
    )
    p.add_argument(
        "--latency-cache",
        type=Path,
        default=LATENCY_CACHE,
        help=f"folder of the latency planner's candidate timings, reused by later runs (default {LATENCY_CACHE})",
    )
    p.add_argument(
        "--layout",
        choices=["paired", "paired_ab", "unpaired", "images"],
        help="dataset layout (default: detected from the folder names)",
    )
    p.add_argument("--key", help="the entry to use when the file holds several networks (e.g. netG_A)")
    p.add_argument(
        "--reverse",
        type=Path,
        help="CycleGAN's B->A generator (latest_net_G_B.pth): keeps the cycle term while condensing",
    )
    p.add_argument(
        "--dropout",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the generator was trained with dropout (default: the reference's default, logged)",
    )
    p.add_argument("--load-size", type=int, default=256, help="images are resized to this square side (default 256)")
    p.add_argument("--crop-size", type=int, help="train on random crops of this side (default: whole images)")
    p.add_argument(
        "--params-file",
        type=Path,
        help="a params.yaml whose train/condense/prune/distill/evaluate/"
        "profile sections to use (default: the built-in defaults)",
    )
    p.add_argument("--condense-steps", type=int)
    p.add_argument("--distill-steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (training)")
    p.add_argument(
        "--processes",
        type=int,
        help="train with this many processes (dist.nproc: torchrun, one GPU each on CUDA; default 1)",
    )
    p.add_argument("--task", default="own", help="the task name recorded in the checkpoints (default own)")
    p.add_argument("--torch-home", type=Path, default=DEFAULT_TORCH_HOME)

    p = verb(
        "promote",
        cmd_promote,
        "gate the registered students of a task and set the champion aliases "
        "(gates: the params file's promote section; a flag overrides its gate)",
    )
    p.add_argument("--task", required=True)
    add_gate_flags(p)

    p = verb(
        "storage",
        cmd_storage,
        "check the S3 bucket (endpoint and keys from the environment) and configure DVC and MLflow to use it",
    )
    p.add_argument("--bucket", help="default: $ALAP_S3_BUCKET")
    p.add_argument("--endpoint", help="default: $AWS_ENDPOINT_URL or $ALAP_S3_ENDPOINT")
    p.add_argument("--create-bucket", action="store_true", help="create the bucket first if it does not exist")
    p.add_argument("--configure-dvc", action="store_true", help="make it the default DVC remote (config.local)")

    p = verb(
        "services",
        cmd_services,
        "start (up), stop (down) or show (status) the team stack on 127.0.0.1: PostgreSQL, an S3 server, an MLflow "
        "server on PostgreSQL with artifacts on S3, and a Prefect server; data, pids and logs in --dir",
    )
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", type=Path, default=Path(".alap/services"), help="the stack's folder (default %(default)s)")
    p.add_argument("--bucket", default="alap", help="S3 bucket for MLflow artifacts and the DVC remote (up)")
    for name in ("postgres", "s3", "mlflow", "prefect"):
        p.add_argument(
            f"--{name}-port", type=int, help="(up) default: postgres 5433, s3 9000, mlflow 5000, prefect 4200"
        )

    p = verb(
        "bench",
        cmd_bench,
        "benchmark ALAP against uniform-width, L1-norm, slimming and Torch-Pruning "
        "baselines and its ablations at MACs budgets; write reports/benchmark.md",
    )
    p.add_argument("--bench-params", type=Path, default=Path("bench/params.yaml"))
    p.add_argument("--task", action="append", help="benchmark this task (repeatable; default: bench params' tasks)")
    p.add_argument("--torch-home", type=Path, default=DEFAULT_TORCH_HOME)
    only = p.add_mutually_exclusive_group()
    only.add_argument("--no-report", action="store_true", help="run the tasks, leave the report alone")
    only.add_argument("--report-only", action="store_true", help="rebuild the report from existing results")

    p = verb(
        "bench-latency",
        cmd_bench_latency,
        "time the paper-size U-Net and ResNet teachers at 256 px on each CPU spec with ONNX Runtime and PyTorch, "
        "and the students the latency planner picks for each budget; write reports/latency.md (resumes per row)",
    )
    p.add_argument("--settings", type=Path, default=Path("bench/latency.yaml"))
    p.add_argument("--teacher", action="append", help="run only this teacher of the settings (repeatable)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from the rows on disk")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one verb. A user error (:func:`alap.errors.is_user_error`) is one line on stderr and exit status 2;
    anything else is a bug and keeps its traceback."""
    prog, verbose = "alap", False
    try:
        args = build_parser().parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # what a torchrun launch runs again
        prog, verbose = f"alap {args.verb}", args.verbose
        setup_logging("WARNING" if args.quiet else None)
        logging.getLogger("alap").setLevel(logging.DEBUG if verbose else logging.NOTSET)
        args.fn(args)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        if verbose:
            traceback.print_exc()
        print(f"{prog}: error: {message(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
