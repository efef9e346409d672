"""Serve alap's deployments so they run on schedule and show in the Prefect UI.

    alap services up && source .alap/services/env.sh       # the team stack: Prefect on http://127.0.0.1:4200
    python -m flows.serve                                  # serves the deployments below until interrupted

or with a Prefect server alone: ``prefect server start --host 127.0.0.1`` in one terminal, and in another
``export PREFECT_API_URL=http://127.0.0.1:4200/api`` (this shell only: ``prefect config set`` outlives the server)
before ``python -m flows.serve``.

Deployments: ``nightly-sweep`` (the sweep at 02:00), ``nightly-promote`` (promotion at 06:00, after the sweep
has registered its students) and ``pipeline`` (no schedule; run it from the UI or
``prefect deployment run alap-pipeline/pipeline``). Cron times and time zone are options; the promotion gates are
the params file's ``promote`` section, read when the flow runs, and ``--device``/``--max-p50-ms`` override them.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from prefect import serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.pipeline import pipeline
from flows.promote import promote_flow
from flows.sweep import resource, sweep

SWEEP_CRON = "0 2 * * *"
PROMOTE_CRON = "0 6 * * *"


def build_deployments(
    sweep_cron: str = SWEEP_CRON,
    promote_cron: str = PROMOTE_CRON,
    timezone: str = "UTC",
    params_path: str = "params.yaml",
    out_root: str = "sweeps/nightly",
    device: str | None = None,
    max_p50_ms: float | None = None,
    dask_address: str | None = None,
    point_resources: dict[str, float] | None = None,
) -> list[RunnerDeployment]:
    """The three deployments, with their schedules and default parameters (overridable per run in the UI).

    Promotion gates not given here are left to the params file's ``promote`` section."""
    sweep_params = {"params_path": params_path, "out_root": out_root, "name": "nightly-sweep"}
    if dask_address:
        sweep_params["dask_address"] = dask_address
    if point_resources:
        sweep_params["point_resources"] = point_resources
    gates = {name: value for name, value in (("device", device), ("max_p50_ms", max_p50_ms)) if value is not None}
    return [
        sweep.to_deployment(
            name="nightly-sweep",
            schedules=[Cron(sweep_cron, timezone=timezone)],
            parameters=sweep_params,
            tags=["alap", "sweep"],
            description=f"Sparsity sweep at `{sweep_cron}` ({timezone}); students registered as alap-<task>.",
        ),
        promote_flow.to_deployment(
            name="nightly-promote",
            schedules=[Cron(promote_cron, timezone=timezone)],
            parameters={"params_path": params_path, **gates},
            tags=["alap", "promote"],
            description=f"At `{promote_cron}` ({timezone}): the best gated student becomes champion.",
        ),
        pipeline.to_deployment(
            name="pipeline",
            parameters={"params_path": params_path},
            tags=["alap", "pipeline"],
            description="dvc repro stage by stage, summary artifact, MLflow logging, registry, promotion.",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the alap deployments (runs until interrupted).")
    parser.add_argument("--sweep-cron", default=SWEEP_CRON)
    parser.add_argument("--promote-cron", default=PROMOTE_CRON)
    parser.add_argument("--timezone", default="UTC")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out-root", default="sweeps/nightly")
    parser.add_argument("--device", help="device whose latency gates promotion (default: params' promote.device)")
    parser.add_argument("--max-p50-ms", type=float, help="default: params' promote.max_p50_ms")
    parser.add_argument("--dask-address", help="run sweep points on this Dask scheduler")
    parser.add_argument(
        "--point-resources", nargs="+", type=resource, metavar="NAME=AMOUNT", help="e.g. GPU=1 (Dask resources)"
    )
    args = parser.parse_args(argv)
    serve(
        *build_deployments(
            args.sweep_cron,
            args.promote_cron,
            args.timezone,
            args.params,
            args.out_root,
            args.device,
            args.max_p50_ms,
            args.dask_address,
            dict(args.point_resources) if args.point_resources else None,
        )
    )


if __name__ == "__main__":
    main()
