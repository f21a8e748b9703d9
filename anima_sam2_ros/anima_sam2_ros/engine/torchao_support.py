"""torchao, imported only when INT8 needs it, and quietly.

torchao's import logs a warning for every bundled CUDA kernel library that a CPU build of torch
cannot load (``Failed to load ..._C_mxfp8...``) and makes torch log ``_pytree`` deprecation
warnings. None of that concerns the int8 Linear layers the engine uses, so those records are
re-logged at DEBUG on ``anima_sam2_ros.engine`` instead of printed at every start.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any

from .errors import ModelLoadError

LOG = logging.getLogger("anima_sam2_ros.engine")
_NOISY_LOGGERS = ("torchao", "torch.utils._pytree")
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _captured_import_logs() -> Iterator[None]:
    handler = _Collect()
    saved = []
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, list(logger.handlers)))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate, handlers in saved:
            logger.handlers = handlers
            logger.propagate = propagate
        for record in handler.records:
            LOG.debug("torchao import: %s", record.getMessage())


def import_torchao() -> Any | None:
    """The ``torchao`` module (imported once, its import-time log noise captured), or None."""
    with _LOCK:
        if "module" not in _STATE:
            try:
                with _captured_import_logs():
                    import torchao
                    import torchao.quantization  # noqa: F401 - the part the engine uses

                    from .hf_import import torchao_imported

                    torchao_imported()
            except Exception as exc:  # noqa: BLE001 - missing, or broken against this torch
                LOG.debug("torchao unavailable: %s: %s", type(exc).__name__, exc)
                _STATE["error"] = f"{type(exc).__name__}: {exc}"
                torchao = None
            _STATE["module"] = torchao
    return _STATE["module"]


def torchao_version() -> str | None:
    """The installed torchao's version, or None (without importing it)."""
    try:
        from importlib.metadata import version

        return version("torchao")
    except Exception:  # noqa: BLE001 - PackageNotFoundError, broken metadata
        return None


def int8_tensor_cls() -> tuple[Any, Any]:
    """Torchao's ``Int8Tensor`` and its activation-kwargs dataclass, or ``(None, None)``."""
    if import_torchao() is None:
        return None, None
    try:
        from torchao.quantization.quantize_.workflows.int8.int8_tensor import (
            Int8Tensor,
            QuantizeTensorToInt8Kwargs,
        )
    except Exception:  # noqa: BLE001 - another torchao layout
        return None, None
    return Int8Tensor, QuantizeTensorToInt8Kwargs


def loaded_int8_tensor_cls() -> Any:
    """``Int8Tensor`` if torchao is already imported (never imports it), else None."""
    if _STATE.get("module") is None:
        return None
    return int8_tensor_cls()[0]


def act_quant_kwargs(act: dict[str, Any], kwargs_cls: Any) -> Any:
    """Torchao's activation-quantization kwargs for an artifact's ``scheme.activation``."""
    from torchao.quantization.granularity import PerRow, PerTensor
    from torchao.quantization.quant_primitives import MappingType

    gran = PerTensor() if act.get("granularity") == "per_tensor" else PerRow()
    mapping = MappingType.ASYMMETRIC if act.get("mapping") == "asymmetric" else MappingType.SYMMETRIC
    return kwargs_cls(granularity=gran, mapping_type=mapping,
                      reduce_range=bool(act.get("reduce_range", False)))


def quantize_dynamic_int8(model: Any) -> None:
    """Dynamic int8 activations x int8 weights on every ``nn.Linear`` (torchao), in place."""
    if import_torchao() is None:
        raise ModelLoadError(
            f"precision 'int8' from FP32 weights needs torchao ({_STATE.get('error')}); install "
            "torchao, or load an INT8 artifact made by `anima-sam2 quantize` (no torchao needed), "
            "or use precision fp16")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig())
