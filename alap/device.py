"""Choose the compute device: CUDA when present, CPU otherwise, or what params.yaml asks for."""

from __future__ import annotations

import os

import torch

from alap.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto``/``cpu``/``cuda``/``cuda:N`` to a torch device; asking for CUDA without one is an error. In a
    torchrun worker (alap/launch.py) ``auto`` and ``cuda`` mean the worker's own GPU, ``cuda:LOCAL_RANK``."""
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was requested (params.yaml: device) but CUDA is not available")
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in os.environ:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))  # a torchrun worker: one GPU per process
    return device
