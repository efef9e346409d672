"""Prefect flows and deployments for alap: orchestration only, every computation lives in the alap package.

- flows.pipeline: the DVC pipeline stage by stage, summary artifact, MLflow logging.
- flows.sweep: tasks x sparsity weights x sparsities fanned out over threads or Dask.
- flows.promote: quality/latency gates and registry aliases.
- flows.serve: the deployments with their cron schedules (`python -m flows.serve`).
"""
