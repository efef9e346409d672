"""The team stack on this machine: `alap services up|down|status` (docs/architecture.md, "The team stack").

process.py runs one detached server (pid file, log, readiness, stop); postgres.py makes and runs a local
PostgreSQL cluster; stack.py wires PostgreSQL, the S3 server, MLflow and Prefect together in one folder.
"""
