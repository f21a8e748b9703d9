"""Pure-Python SAM 2.1 inference engine (no ROS, no torchvision, no PIL).

Importing this package is cheap: errors and data types are imported eagerly; ``load_model``,
``LoadedModel``, ``Segmenter`` and ``Tracker`` (which import torch/transformers) are imported on
first attribute access. See ``docs/engine-api.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import EngineError, InvalidInputError, ModelLoadError, UnknownObjectError
from .types import ObjectResult, Prompt

_LAZY = {
    "load_model": ".loading",
    "LoadedModel": ".loading",
    "Segmenter": ".segmenter",
    "Tracker": ".tracker",
    "model_names": ".registry",
    "step_cameras": ".multi_camera",
}

__all__ = [
    "EngineError",
    "InvalidInputError",
    "LoadedModel",
    "ModelLoadError",
    "ObjectResult",
    "Prompt",
    "Segmenter",
    "Tracker",
    "UnknownObjectError",
    "load_model",
    "model_names",
    "step_cameras",
]


def __getattr__(name: str) -> Any:
    """Import the heavy members (torch, transformers) on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    """Eager and lazy public names."""
    return sorted(set(globals()) | set(_LAZY))
