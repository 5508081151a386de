"""The exception hierarchy of deepx_opt.

Every error a user can cause is a :class:`DeepxError`; the CLI turns it into one
readable line and a non-zero exit. Each message names the object, the bad value
and what would be accepted.
"""

from __future__ import annotations

__all__ = [
    "DeepxError",
    "ModelLoadError",
    "UnsupportedOpError",
    "ShapeInferenceError",
    "CompressionError",
    "ProfileError",
    "CostModelError",
    "ProblemError",
    "InfeasiblePlanError",
    "SolverError",
    "PlanError",
    "BackendUnavailableError",
    "BackendError",
    "InputError",
]


class DeepxError(Exception):
    """Base class of every error deepx_opt raises on purpose."""


class ModelLoadError(DeepxError):
    """A model file is missing, truncated, not ONNX, or fails ONNX's checker."""


class UnsupportedOpError(DeepxError):
    """An ONNX operator (or an attribute value of one) that deepx_opt does not support."""


class ShapeInferenceError(DeepxError):
    """A tensor shape that can be neither inferred nor taken from ``input_shapes``."""


class CompressionError(DeepxError):
    """Bad request to Runtime Layer Compression (rank out of range, bad calibration data)."""


class ProfileError(DeepxError):
    """A device profile that is missing, malformed, or of an unsupported version."""


class CostModelError(DeepxError):
    """A cost model asked to predict work it has no model for (never predicts zero)."""


class ProblemError(DeepxError):
    """A planning Problem that is malformed (unknown processor, bad budget, empty options)."""


class InfeasiblePlanError(DeepxError):
    """No plan meets the constraints; the message names the binding one and the best achievable."""


class SolverError(DeepxError):
    """A solver that is unknown, not installed, or failed."""


class PlanError(DeepxError):
    """A plan that is malformed or does not fit the model/problem it is used with."""


class BackendUnavailableError(DeepxError):
    """A processor or backend that this machine does not have (the message lists those it has)."""


class BackendError(DeepxError):
    """A backend failed at run time (e.g. an OpenCL kernel failed to build)."""


class InputError(DeepxError):
    """User input data (arrays, files) of the wrong shape, dtype or format."""
