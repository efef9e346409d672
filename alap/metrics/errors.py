"""Errors raised around pretrained metric weights.

They are distinct types so that a stage or the CLI can tell "weights not provided yet" (a setup step the
user can fix by running ``alap weights``) from "weights present but wrong" (never silently tolerated,
because a metric computed with other weights is not comparable with published numbers).
"""

from __future__ import annotations

from alap.errors import UserError


class WeightsError(UserError):
    """Base class: something is wrong with the pretrained weights a metric needs."""


class MissingWeightsError(WeightsError):
    """The weights file is absent and cannot be produced; the message says how to provide it."""


class UnrecognisedWeightsError(WeightsError):
    """A weights file exists but is neither the official file nor the conversion recorded in weights.json."""


class UnsafePickleError(WeightsError):
    """A pickle refers to something other than numpy arrays; it is refused rather than executed."""


class WeightsVerificationError(WeightsError):
    """The weights load but do not reproduce the published behaviour (LPIPS example values, pool3 features)."""
