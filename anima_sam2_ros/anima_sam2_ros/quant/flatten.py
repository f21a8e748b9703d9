"""torchao-quantized network -> the plain tensors of an ``anima-sam2-int8`` artifact.

torchao's ``Int8Tensor`` weights are tensor subclasses whose layout changes between torchao
releases; the artifact stores what they stand for (int8 data, scale, zero point) as plain
tensors, and the scheme (granularity, activation quantization) as JSON, so any reader can use it.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from anima_sam2_ros.engine.int8_format import (
    WEIGHT_INT8,
    WEIGHT_SCALE,
    WEIGHT_ZERO_POINT,
    non_persistent_buffers,
)
from anima_sam2_ros.engine.torchao_support import int8_tensor_cls


def unwrap_model(model_or_loaded: Any) -> Any:
    """The ``Sam2VideoModel`` inside a ``LoadedModel`` (or the argument itself)."""
    inner = getattr(model_or_loaded, "model", None)
    if inner is not None and hasattr(inner, "state_dict") and hasattr(model_or_loaded, "precision"):
        return inner
    return model_or_loaded


def _granularity_name(granularity: Any) -> str:
    name = type(granularity).__name__
    if name == "PerRow":
        return "per_row"
    if name == "PerTensor":
        return "per_tensor"
    raise ValueError(f"unsupported torchao granularity {granularity!r} (PerRow / PerTensor only)")


def _mapping_name(mapping: Any) -> str:
    name = getattr(mapping, "name", str(mapping)).lower()
    if name not in ("symmetric", "asymmetric"):
        raise ValueError(f"unsupported torchao mapping type {mapping!r}")
    return name


def describe_int8_weight(weight: Any) -> Dict[str, Any]:
    """Scheme of one torchao Int8Tensor weight as plain JSON values."""
    act = weight.act_quant_kwargs
    if weight.qdata.ndim != 2:
        raise ValueError(f"only 2-D Linear weights are supported, got {tuple(weight.qdata.shape)}")
    if any(getattr(weight, n, None) is not None for n in ("act_quant_scale", "act_quant_zero_point",
                                                          "act_pre_scale")):
        raise ValueError("static activation scales / pre-scales are not part of format_version 1")
    out_f, in_f = weight.qdata.shape
    block = [int(b) for b in weight.block_size]
    if block == [1, in_f]:
        wgran = "per_row"
    elif block == [out_f, in_f]:
        wgran = "per_tensor"
    else:
        raise ValueError(f"unsupported weight block size {block} for shape {(out_f, in_f)}")
    scheme: Dict[str, Any] = {
        "weight": {"dtype": "int8", "granularity": wgran,
                   "scale_dtype": str(weight.scale.dtype).replace("torch.", "")},
        "activation": None,
        "reduce_range": bool(weight.reduce_range),
    }
    if act is not None:
        scheme["activation"] = {
            "dtype": "int8",
            "dynamic": True,
            "granularity": _granularity_name(act.granularity),
            "mapping": _mapping_name(act.mapping_type),
            "reduce_range": bool(act.reduce_range),
        }
    return scheme


def quantized_linear_names(model: Any) -> List[str]:
    """Module paths of the ``nn.Linear`` layers whose weight is a torchao ``Int8Tensor``."""
    int8_tensor, _ = int8_tensor_cls()
    if int8_tensor is None:
        return []
    import torch

    return [name for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and isinstance(mod.weight, int8_tensor)]


def recipe_of(scheme: Dict[str, Any]) -> str:
    """The recipe name a scheme stands for."""
    return "int8-dynamic" if scheme.get("activation") else "int8-weight-only"


def plain_state_dict(model: Any) -> Tuple[Dict[str, Any], List[str], Optional[Dict[str, Any]], List[str]]:
    """Flatten a (torchao-)quantized ``Sam2VideoModel`` into plain tensors (CPU, contiguous).

    Returns ``(tensors, quantized_modules, scheme, non_persistent_buffer_names)``; ``scheme`` is
    None when nothing is quantized.
    """
    import torch

    int8_tensor, _ = int8_tensor_cls()
    quantized = quantized_linear_names(model)
    qset = set(quantized)
    scheme: Optional[Dict[str, Any]] = None
    tensors: Dict[str, Any] = {}
    for name in quantized:
        weight = model.get_submodule(name).weight
        this = describe_int8_weight(weight)
        if scheme is None:
            scheme = this
        elif this != scheme:
            raise ValueError(f"{name}: quantization scheme {this} differs from the others' {scheme}; "
                             f"format_version 1 holds one scheme per artifact")
        tensors[name + WEIGHT_INT8] = weight.qdata.detach().to("cpu").contiguous()
        tensors[name + WEIGHT_SCALE] = weight.scale.detach().to("cpu").contiguous()
        if weight.zero_point is not None:
            tensors[name + WEIGHT_ZERO_POINT] = weight.zero_point.detach().to("cpu", torch.int8).contiguous()
    for key, value in model.state_dict().items():
        mod_name, _, leaf = key.rpartition(".")
        if leaf == "weight" and mod_name in qset:
            continue
        if int8_tensor is not None and isinstance(value, int8_tensor):  # pragma: no cover - non-Linear
            raise ValueError(f"{key}: Int8Tensor outside an nn.Linear is not supported")
        tensors[key] = value.detach().to("cpu").contiguous()
    extra = non_persistent_buffers(model)
    for key, value in extra.items():
        tensors[key] = value.detach().to("cpu").contiguous()
    # safetensors refuses tensors that share memory: give every entry its own storage.
    seen: Dict[Tuple[int, int], str] = {}
    for key in list(tensors):
        t = tensors[key]
        ident = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (0, id(t))
        if ident in seen or t.untyped_storage().nbytes() != t.numel() * t.element_size():
            tensors[key] = t.clone()
        seen[ident] = key
    return tensors, quantized, scheme, sorted(extra)
