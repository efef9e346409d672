"""Prefect flows and deployments for alap: orchestration only, every computation lives in the alap package.

- flows.pipeline: the DVC pipeline stage by stage, summary artifact, MLflow logging.
- flows.sweep: tasks x sparsity weights x points (sparsities, latency budgets) fanned out over threads or Dask.
- flows.promote: quality/latency gates and registry aliases.
- flows.serve: the deployments with their cron schedules (`python -m flows.serve`).
"""

import os

# Defaults for a run without a Prefect server of the user's own (no PREFECT_API_URL): Prefect starts a temporary
# local server, whose telemetry service would call home (a closed network logs errors) and, on SQLite, fail with
# "database is locked" tracebacks beside the flow's own writes. Set before any flow module imports prefect; a
# value the user exported wins.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
