"""INT8 tooling for SAM 2.1: quantize (torchao), export (plain safetensors), evaluate, model card.

The engine reads and runs artifacts (``engine/int8_format.py``, ``engine/int8_loader.py``,
``engine/int8_linear.py``, ``engine/torchao_support.py``); this package writes them and imports
the engine, never the reverse.

Modules:

* ``flatten``: torchao ``Int8Tensor`` weights -> plain tensors + a JSON scheme.
* ``export``: ``export_int8_artifact``, sizes, parameter counts, ``preprocessor_config.json``.
* ``quantize``: ``quantize_model`` and the ``anima-sam2 quantize`` command (``main_quantize``).
* ``evaluate``: INT8 vs FP32 fidelity on synthetic scenes, ``anima-sam2 evaluate`` (``main_evaluate``).
* ``model_card``: the generated ``README.md``.

Importing this package imports neither torch nor rclpy; the members below are loaded on use.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_int8_artifact": ".export",
    "load_int8_artifact": "anima_sam2_ros.engine.int8_loader",
    "default_artifact_dir": "anima_sam2_ros.engine.int8_format",
    "is_int8_artifact": "anima_sam2_ros.engine.int8_format",
    "verify_artifact": "anima_sam2_ros.engine.int8_format",
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
