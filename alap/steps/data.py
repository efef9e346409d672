"""The ``data@<task>`` step: generate a built-in task, or check a folder dataset where it lies."""

from __future__ import annotations

import logging

from alap.config import Params
from alap.data.splits import SPLITS
from alap.data.synthetic import generate_task
from alap.task import Task

log = logging.getLogger(__name__)


def prepare_data(params: Params, task_name: str) -> None:
    """Generate a synthetic task into its root, or validate a folder dataset where it is (every split; the
    folder is only read)."""
    task = Task.from_params(params, task_name)
    if task.params.source == "synthetic":
        d = params.data
        generate_task(task_name, task.params.root, d.image_size, d.n_train, d.n_val, d.n_test, params.seed)
        log.info("generated %s into %s", task_name, task.params.root)
    for split in SPLITS:
        dataset = task.dataset(split, for_eval=split == "test")
        log.info("%s/%s: %d items", task_name, split, len(dataset))
