"""transformers' SAM 2 classes, imported without importing torchao.

transformers' ``modeling_utils`` imports its torchao quantizer, and that module imports torchao
whenever torchao is installed. For an FP32 or half-precision engine that is pure cost: about 0.4 s
more at start, torchao's ``Failed to load ..._C_mxfp8...`` warnings on CPU builds of torch and
torch's ``_pytree`` deprecation warnings on stderr. The quantizer's only module-level torchao use
is ``flatten_tensor_state_dict`` (saving torchao models with ``save_pretrained``, which the engine
never does), so the first import of transformers' modeling code here sees torchao as unavailable
while that module loads; ``torchao_imported`` completes the module once INT8 has imported torchao.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

_QUANTIZER = "transformers.quantizers.quantizer_torchao"
_LOCK = threading.Lock()


def _import_modeling_without_torchao() -> None:
    if _QUANTIZER in sys.modules or "torchao" in sys.modules:
        return
    try:
        import transformers.utils as hf_utils
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        return
    real = getattr(hf_utils, "is_torchao_available", None)
    if real is None:  # another transformers layout: import it the ordinary way
        return
    hf_utils.is_torchao_available = lambda *args, **kwargs: False
    try:
        importlib.import_module(_QUANTIZER)
    except ImportError:  # pragma: no cover - a transformers without that module
        return
    finally:
        hf_utils.is_torchao_available = real
    sys.modules[_QUANTIZER].is_torchao_available = real


def transformers_sam2() -> Any:
    """The ``transformers`` module with its SAM 2 classes importable, torchao left out."""
    with _LOCK:
        _import_modeling_without_torchao()
    import transformers

    return transformers


def torchao_imported() -> None:
    """Give transformers' torchao quantizer what its skipped import would have defined."""
    module = sys.modules.get(_QUANTIZER)
    if module is None or hasattr(module, "flatten_tensor_state_dict"):
        return
    try:
        from torchao.prototype.safetensors.safetensors_support import flatten_tensor_state_dict
    except ImportError:
        return
    module.flatten_tensor_state_dict = flatten_tensor_state_dict
