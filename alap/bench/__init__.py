"""The benchmark: ALAP against baselines and its own ablations, every student on the same MACs budgets.

    params.py     bench/params.yaml, typed            methods.py   the compared methods as a table
    budget.py     land a knob on a MACs budget        students.py  uniform / L1 / Torch-Pruning / slimming students
    magnitude.py  L1-norm and TP magnitude pruning    finetune.py  teacher-free fine-tuning, training from scratch
    run.py        one task: train, evaluate, profile  entry.py     the `alap bench` verb
    report.py / plots.py   reports/benchmark.md and Pareto plots

Each task's rows are logged to the MLflow experiment ``alap-bench`` by :func:`alap.tracking.runs.log_bench_task`.

Entry point: :func:`alap.bench.entry.bench` (``alap bench``; ``dvc repro bench/dvc.yaml``).
"""
