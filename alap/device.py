"""Choose the compute device: CUDA when present, CPU otherwise, or what params.yaml asks for."""

from __future__ import annotations

import torch

from alap.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto``/``cpu``/``cuda``/``cuda:N`` to a torch device; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was requested (params.yaml: device) but CUDA is not available")
    return device
