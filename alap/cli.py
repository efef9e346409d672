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
