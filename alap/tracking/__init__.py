"""MLflow tracking and registry for alap.

Layout of what gets logged (docs/architecture.md): a pipeline run or a sweep is one *parent* run; the teacher, the
condensed network and each sparsity setting are *child* runs under it. DVC stages are separate
processes, so every call is find-or-create by a stable key and safe to repeat: a rerun attaches
to the same parent and child instead of making new ones.

Where runs go: ``MLFLOW_TRACKING_URI`` when set (a team server), otherwise an embedded SQLite store
``<project>/mlflow.db`` with artifacts under ``<project>/mlartifacts``. A plain ``./mlruns`` file store
is not used: MLflow 3.17 refuses it unless MLFLOW_ALLOW_FILE_STORE is set.

Tracking is a side channel: callers write their own outputs first and only then log, so an
unreachable server (`TrackingUnavailable`) never costs a result.

    client.py      the MLflow client wrapper (Tracker): the only module that imports mlflow
    provenance.py  git commit, DVC input hashes, metric-weights provenance, stable configuration and weights ids
    keys.py        nested values as MLflow keys and strings, shared by the two above
    runs.py        what a pipeline, a sweep and a benchmark log: one child run per model, logged one way

This package imports none of them, so provenance can be read without importing mlflow.
"""
