"""Read an ``anima-sam2-int8`` artifact into a network: the part of INT8 a robot needs.

The network is built on the meta device (no FP32 weights are ever allocated), the stored tensors
are materialised straight onto the target device with ``safetensors`` (no pickle), and each
quantized Linear becomes a torchao ``Int8Tensor`` weight (outputs identical to the in-memory
quantized model that was exported) or, without a usable torchao, the pure-torch ``Int8Linear``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from .int8_format import (
    CONFIG_FILE,
    MODEL_FILE,
    WEIGHT_INT8,
    WEIGHT_SCALE,
    WEIGHT_ZERO_POINT,
    PathLike,
    fail,
    non_persistent_buffers,
    verify_artifact,
)


def _read_config(path: PathLike):
    from .hf_import import transformers_sam2

    try:
        config = transformers_sam2().Sam2VideoConfig.from_json_file(os.path.join(path, CONFIG_FILE))
    except Exception as exc:  # noqa: BLE001 - any parse failure is a refusal
        raise fail(path, f"cannot read {CONFIG_FILE} as a Sam2VideoConfig: "
                         f"{type(exc).__name__}: {exc}") from None
    if getattr(config, "model_type", None) != "sam2_video":
        raise fail(path, f"{CONFIG_FILE} model_type is {getattr(config, 'model_type', None)!r}, "
                         f"expected 'sam2_video'")
    return config


def _build_skeleton(config: Any):
    """``Sam2VideoModel(config)`` with every tensor on the meta device: no weight memory at all."""
    import torch

    from .hf_import import transformers_sam2

    with torch.device("meta"):
        model = transformers_sam2().Sam2VideoModel(config)
    return model.eval()


def _expected_keys(model: Any, quantized: Iterable[str],
                   np_buffers: Iterable[str]) -> Dict[str, Tuple[int, ...]]:
    qset = set(quantized)
    keys: Dict[str, Tuple[int, ...]] = {}
    for key, value in model.state_dict().items():
        mod_name, _, leaf = key.rpartition(".")
        if leaf == "weight" and mod_name in qset:
            keys[mod_name + WEIGHT_INT8] = tuple(value.shape)
        else:
            keys[key] = tuple(value.shape)
    bufs = non_persistent_buffers(model)
    for key in np_buffers:
        if key in bufs:
            keys[key] = tuple(bufs[key].shape)
    return keys


def _set_tensor(model: Any, key: str, value: Any) -> None:
    import torch

    mod_name, _, leaf = key.rpartition(".")
    mod = model.get_submodule(mod_name) if mod_name else model
    if leaf in mod._parameters:
        mod._parameters[leaf] = torch.nn.Parameter(value, requires_grad=False)
    elif leaf in mod._buffers:
        mod._buffers[leaf] = value
    else:  # pragma: no cover - keys were checked against the skeleton
        raise KeyError(key)


def _scale_block(path: PathLike, name: str, scale: Any, shape: Tuple[int, int]) -> list:
    out_f, in_f = shape
    if tuple(scale.shape) == (out_f, 1):
        block = [1, in_f]
    elif scale.numel() == 1 and scale.dim() == 2:
        block = [out_f, in_f]
    else:
        raise fail(path, f"{name}{WEIGHT_SCALE} has shape {tuple(scale.shape)}, expected "
                         f"({out_f}, 1) or (1, 1)")
    if not scale.is_floating_point():
        raise fail(path, f"{name}{WEIGHT_SCALE} has dtype {scale.dtype}, expected a float")
    return block


def load_int8_artifact(path: PathLike, device: Any = "cpu", use_torchao: Optional[bool] = None):
    """Load an ``anima-sam2-int8`` artifact directory as an eval-mode ``Sam2VideoModel`` on ``device``.

    Verifies ``quantization.json`` (format, format_version) and the size + sha256 of
    ``model.safetensors``, ``config.json`` and ``preprocessor_config.json`` first. torchao is
    used when it imports (``use_torchao=None``), never when ``use_torchao=False``.

    Raises:
        ModelLoadError: missing/garbage/tampered files, unsupported format_version, tensors whose
            names, shapes or dtypes do not match the architecture in ``config.json``.
    """
    import torch

    from .int8_linear import Int8Linear
    from .torchao_support import act_quant_kwargs, int8_tensor_cls

    path = os.fspath(Path(path).expanduser())
    info = verify_artifact(path)
    config = _read_config(path)
    try:
        dev = torch.device(device if device not in (None, "auto") else
                           ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise fail(path, f"invalid device {device!r}: {exc}") from None

    int8_tensor, kwargs_cls = int8_tensor_cls() if use_torchao is not False else (None, None)
    if use_torchao is None:
        use_torchao = int8_tensor is not None
    elif use_torchao and int8_tensor is None:
        raise fail(path, "use_torchao=True but torchao's Int8Tensor is not importable")
    scheme = info.get("scheme") or {}
    act = scheme.get("activation")
    if (info["recipe"] == "int8-dynamic") != bool(act):
        raise fail(path, f"recipe {info['recipe']!r} contradicts scheme.activation={act!r}")
    reduce_range = bool(scheme.get("reduce_range", False))

    try:
        model = _build_skeleton(config)
    except Exception as exc:  # noqa: BLE001 - a config transformers cannot build
        raise fail(path, f"cannot build the network from {CONFIG_FILE}: "
                         f"{type(exc).__name__}: {exc}") from None
    quantized = [str(q) for q in info["quantized_modules"]]
    for name in quantized:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            mod = None
        if not isinstance(mod, torch.nn.Linear):
            raise fail(path, f"quantized module {name!r} is not an nn.Linear of this architecture")
    np_buffers = [str(b) for b in info.get("non_persistent_buffers", [])]
    expected = _expected_keys(model, quantized, np_buffers)
    optional = {n + suffix for n in quantized for suffix in (WEIGHT_SCALE, WEIGHT_ZERO_POINT)}

    from safetensors import safe_open

    try:
        handle = safe_open(os.path.join(path, MODEL_FILE), framework="pt", device=str(dev))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError...
        raise fail(path, f"{MODEL_FILE} is not a readable safetensors file: "
                         f"{type(exc).__name__}: {exc}") from None
    with handle as fh:
        stored = set(fh.keys())
        missing = sorted(k for k in expected if k not in stored)
        missing += sorted(n + WEIGHT_SCALE for n in quantized if n + WEIGHT_SCALE not in stored)
        unexpected = sorted(k for k in stored if k not in expected and k not in optional)
        if missing or unexpected:
            raise fail(path, f"{MODEL_FILE} does not match the architecture in {CONFIG_FILE}: "
                             f"{len(missing)} missing tensors {missing[:3]}, "
                             f"{len(unexpected)} unexpected tensors {unexpected[:3]}")

        def get(key: str):
            try:
                return fh.get_tensor(key)
            except Exception as exc:  # noqa: BLE001
                raise fail(path, f"cannot read tensor {key!r}: {type(exc).__name__}: {exc}") from None

        for key, shape in expected.items():
            if key.endswith(WEIGHT_INT8):
                continue
            value = get(key)
            if tuple(value.shape) != shape:
                raise fail(path, f"tensor {key!r} has shape {tuple(value.shape)}, the architecture "
                                 f"expects {shape}")
            _set_tensor(model, key, value)

        for name in quantized:
            qdata = get(name + WEIGHT_INT8)
            shape = expected[name + WEIGHT_INT8]
            if qdata.dtype != torch.int8 or tuple(qdata.shape) != shape:
                raise fail(path, f"{name}{WEIGHT_INT8} is {qdata.dtype} {tuple(qdata.shape)}, expected "
                                 f"torch.int8 {shape}")
            scale = get(name + WEIGHT_SCALE)
            block = _scale_block(path, name, scale, shape)
            zero_point = get(name + WEIGHT_ZERO_POINT) if name + WEIGHT_ZERO_POINT in stored else None
            if zero_point is not None and tuple(zero_point.shape) != tuple(scale.shape):
                raise fail(path, f"{name}{WEIGHT_ZERO_POINT} shape {tuple(zero_point.shape)} != scale shape")
            mod = model.get_submodule(name)
            if use_torchao:
                act_kwargs = act_quant_kwargs(act, kwargs_cls) if act else None
                weight = int8_tensor(qdata, scale, block, torch.float32, zero_point=zero_point,
                                     act_quant_kwargs=act_kwargs, reduce_range=reduce_range)
                mod.weight = torch.nn.Parameter(weight, requires_grad=False)
            else:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                bias = None if mod.bias is None else mod.bias.data
                setattr(parent, child, Int8Linear(qdata, scale, zero_point, bias, act,
                                                  reduce_range=reduce_range))

    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise fail(path, f"tensors not provided by {MODEL_FILE}: {leftover[:5]}")
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()
