"""One fingerprint of a network's weights, for everything that must notice a changed model: resume keys
(alap.loop.params_key), the benchmark's unit keys and the MLflow model tags (alap.tracking)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn


def weights_digest(model: nn.Module) -> str:
    """sha256 over the state dict's names, shapes, dtypes and bytes, in name order: equal weights give equal
    digests on any device, and a changed shape (another pruned student) or value gives another."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(data.shape)}:{data.dtype}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    return digest.hexdigest()
