"""How alap's nested values become MLflow keys and string values.

Both the client (params) and the provenance tags (dvc.lock paths, weights records) need this; it lives apart so
that provenance does not import mlflow through the client.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_BAD_KEY_CHARS = re.compile(r"[^\w./\- :]")  # what MLflow accepts in param, metric and tag keys


def safe_key(key: str) -> str:
    """``key`` with every character MLflow refuses in a key replaced by ``_`` (file paths may hold any)."""
    return _BAD_KEY_CHARS.sub("_", key)


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow wants them: dotted keys (``prune.sparsity``) and string values."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value), default=str)
        else:
            flat[name] = str(value)
    return flat
