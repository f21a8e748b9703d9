"""INT8 artifacts of SAM 2.1: quantize (torchao), export (plain safetensors), reload, evaluate.

Modules:

* ``artifact``: the ``anima-sam2-int8`` format — ``export_int8_artifact``, ``load_int8_artifact``,
  ``default_artifact_dir``, the pure-torch ``Int8Linear`` fallback.
* ``quantize``: ``quantize_model`` and the ``anima-sam2 quantize`` command (``main_quantize``).
* ``evaluate``: INT8 vs FP32 fidelity on synthetic scenes, ``anima-sam2 evaluate`` (``main_evaluate``).
* ``model_card``: the generated ``README.md``.

Importing this package imports neither torch nor rclpy; the members below are loaded on use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_int8_artifact": ".artifact",
    "load_int8_artifact": ".artifact",
    "default_artifact_dir": ".artifact",
    "is_int8_artifact": ".artifact",
    "verify_artifact": ".artifact",
    "quantize_model": ".quantize",
    "main_quantize": ".quantize",
    "register": ".quantize",
    "main_evaluate": ".evaluate",
    "write_model_card": ".model_card",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    """Import members on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    """Public names."""
    return sorted(set(globals()) | set(_LAZY))
