"""The ``anima-sam2-int8`` artifact: one directory, plain safetensors, no pickle, any torchao.

Layout (format_version 1)::

    <dir>/model.safetensors        plain tensors (see key names below)
    <dir>/config.json              transformers Sam2VideoConfig (``to_json_file``)
    <dir>/preprocessor_config.json image_size, mean/std, resize "bilinear antialias" (engine's definition)
    <dir>/quantization.json        format, format_version, recipe, quantized_modules, scheme,
                                   torch/torchao versions, source, sha256 + size of every file above
    <dir>/fidelity.json            (optional) INT8 vs FP32 fidelity numbers, see ``evaluate.py``
    <dir>/README.md                generated model card (``model_card.py``), not verified on load

Key names in ``model.safetensors``. For every quantized ``nn.Linear`` at module path ``P``
(listed in ``quantization.json["quantized_modules"]``):

    ``P.weight_int8``        int8    (out_features, in_features)   the quantized weight
    ``P.weight_scale``       float32 (out_features, 1)             per-output-channel scale
                                     ((1, 1) for per-tensor)
    ``P.weight_zero_point``  int8    same shape as the scale        (optional; 0 for symmetric)
    ``P.bias``               float32 (out_features,)               unchanged (if the layer has one)

    dequantised weight = (weight_int8 - weight_zero_point) * weight_scale

Every other tensor of the network is stored under its usual ``state_dict`` name and dtype. The
non-persistent buffers (RoPE ``inv_freq`` / ``position_ids`` of the memory attention, which
``state_dict`` omits) are stored too, under their module path, so the network is rebuilt from
the file alone (``quantization.json["non_persistent_buffers"]`` lists them).

Such a file loads with ``safetensors`` alone (numpy, torch, any framework), with any torchao
version or none; ``load_int8_artifact`` below turns it back into a ``Sam2VideoModel`` whose
quantized layers are torchao ``Int8Tensor`` weights (identical outputs to the in-memory model
that was exported) or, without a usable torchao, the pure-torch :class:`Int8Linear`.

Where a *named* INT8 artifact lives (``load_model("sam2.1-hiera-small-int8")`` without
``weights``): :func:`default_artifact_dir` — ``$ANIMA_SAM2_HOME/<name>`` if that variable is set,
else ``$XDG_CACHE_HOME/anima_sam2/<name>``, else ``~/.cache/anima_sam2/<name>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from anima_sam2_ros.engine.errors import ModelLoadError

LOG = logging.getLogger("anima_sam2_ros.quant")

FORMAT = "anima-sam2-int8"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
QUANT_FILE = "quantization.json"
FIDELITY_FILE = "fidelity.json"
CARD_FILE = "README.md"
VERIFIED_FILES = (MODEL_FILE, CONFIG_FILE, PREPROCESSOR_FILE)

WEIGHT_INT8 = ".weight_int8"
WEIGHT_SCALE = ".weight_scale"
WEIGHT_ZERO_POINT = ".weight_zero_point"

RECIPES = ("int8-dynamic", "int8-weight-only")
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)
HOME_ENV = "ANIMA_SAM2_HOME"

PathLike = Union[str, "os.PathLike[str]"]


# ----------------------------------------------------------------------------------------------
# Where named artifacts live
# ----------------------------------------------------------------------------------------------
def artifact_home() -> Path:
    """Root folder of named INT8 artifacts.

    ``$ANIMA_SAM2_HOME``, else ``$XDG_CACHE_HOME/anima_sam2``, else ``~/.cache/anima_sam2``.
    """
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "anima_sam2"


def default_artifact_dir(name: str) -> Path:
    """Default directory of the named INT8 artifact ``name`` (e.g. ``sam2.1-hiera-small-int8``).

    ``<artifact_home()>/<name>``; the ``-int8`` suffix is added when missing. The directory may
    not exist: the loader should raise a ModelLoadError that names it, and ``anima-sam2 quantize
    --out`` defaults to it.
    """
    name = str(name).strip()
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ModelLoadError(f"invalid model name for an artifact directory: {name!r}")
    if not name.endswith("-int8"):
        name += "-int8"
    return artifact_home() / name


def is_int8_artifact(path: PathLike) -> bool:
    """True when ``path`` is a directory holding ``quantization.json``."""
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, QUANT_FILE))


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    """Streaming sha256 of a file (constant memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while True:
            block = fh.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def _torchao_version() -> Optional[str]:
    try:
        from importlib.metadata import version

        return version("torchao")
    except Exception:
        return None


def _int8_tensor_cls():
    """Torchao's ``Int8Tensor`` class and its kwargs dataclass, or ``(None, None)``."""
    try:
        from torchao.quantization.quantize_.workflows.int8.int8_tensor import (
            Int8Tensor,
            QuantizeTensorToInt8Kwargs,
        )
    except Exception:
        return None, None
    return Int8Tensor, QuantizeTensorToInt8Kwargs


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


def _describe_int8_weight(weight: Any) -> Dict[str, Any]:
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
        "weight": {"dtype": "int8", "granularity": wgran, "scale_dtype": str(weight.scale.dtype).replace(
            "torch.", "")},
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
    int8_tensor, _ = _int8_tensor_cls()
    if int8_tensor is None:
        return []
    import torch

    return [name for name, mod in model.named_modules()
            if isinstance(mod, torch.nn.Linear) and isinstance(mod.weight, int8_tensor)]


def _recipe_of(scheme: Dict[str, Any]) -> str:
    return "int8-dynamic" if scheme.get("activation") else "int8-weight-only"


def _non_persistent_buffers(model: Any) -> Dict[str, Any]:
    out = {}
    for mod_name, mod in model.named_modules():
        for buf_name in getattr(mod, "_non_persistent_buffers_set", ()):
            buf = mod._buffers.get(buf_name)
            if buf is not None:
                out[f"{mod_name}.{buf_name}" if mod_name else buf_name] = buf
    return out


def plain_state_dict(model: Any) -> Tuple[Dict[str, Any], List[str], Optional[Dict[str, Any]], List[str]]:
    """Flatten a (torchao-)quantized ``Sam2VideoModel`` into plain tensors (CPU, contiguous).

    Returns ``(tensors, quantized_modules, scheme, non_persistent_buffer_names)``; ``scheme`` is
    None when nothing is quantized.
    """
    import torch

    int8_tensor, _ = _int8_tensor_cls()
    quantized = quantized_linear_names(model)
    qset = set(quantized)
    scheme: Optional[Dict[str, Any]] = None
    tensors: Dict[str, Any] = {}
    for name in quantized:
        weight = model.get_submodule(name).weight
        this = _describe_int8_weight(weight)
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
    extra = _non_persistent_buffers(model)
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


def _dequantized_fp32_state(model: Any) -> Dict[str, Any]:
    """The FP32 state dict of the same network (int8 weights dequantised), for size measurement."""
    import torch

    int8_tensor, _ = _int8_tensor_cls()
    fallback = {name: mod for name, mod in model.named_modules() if isinstance(mod, _int8_linear_cls())}
    out = {}
    for key, value in model.state_dict().items():
        mod_name, _, leaf = key.rpartition(".")
        if mod_name in fallback:
            if leaf in ("weight_scale", "weight_zero_point"):
                continue
            if leaf == "weight_int8":
                key, value = mod_name + ".weight", fallback[mod_name].dequantize()
        if int8_tensor is not None and isinstance(value, int8_tensor):
            value = value.dequantize(torch.float32)
        value = value.detach().to("cpu")
        if value.is_floating_point():
            value = value.float()
        out[key] = value.contiguous().clone()
    return out


def measure_fp32_safetensors_bytes(model: Any) -> int:
    """Size in bytes of ``model``'s FP32 ``state_dict`` written as one safetensors file.

    Measured, not estimated: the tensors are written to a temporary file whose size is returned.
    For a quantized model the int8 weights are dequantised to FP32 first (same shapes, same size as
    the FP32 source checkpoint in Hugging Face format).
    """
    from safetensors.torch import save_file

    state = _dequantized_fp32_state(unwrap_model(model))
    with tempfile.TemporaryDirectory(prefix="anima_sam2_fp32_") as tmp:
        path = os.path.join(tmp, "fp32.safetensors")
        save_file(state, path)
        return os.path.getsize(path)


def _write_json(path: PathLike, data: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")


def preprocessor_config(image_size: int) -> Dict[str, Any]:
    """What the engine does to a frame before the network (``engine/preprocess.py``)."""
    return {
        "image_size": int(image_size),
        "input": "uint8 RGB, HxWx3",
        "rescale_factor": 1.0 / 255.0,
        "resize": {"mode": "bilinear", "antialias": True, "align_corners": False,
                   "size": [int(image_size), int(image_size)],
                   "applied_to": "float pixels in [0, 1] (torch.nn.functional.interpolate)"},
        "image_mean": list(IMAGE_MEAN),
        "image_std": list(IMAGE_STD),
        "mask_postprocess": "low-res logits upsampled bilinear straight to HxW, threshold > 0",
    }


def count_parameters(model: Any) -> Dict[str, int]:
    """Parameter counts of a (possibly quantized) network: total, in quantized Linear layers, rest."""
    model = unwrap_model(model)
    qset = set(quantized_linear_names(model))
    total = quantized = 0
    for mod_name, mod in model.named_modules():
        for pname, param in mod.named_parameters(recurse=False):
            n = int(param.numel())
            total += n
            if pname == "weight" and mod_name in qset:
                quantized += n
    return {"total": total, "int8": quantized, "other": total - quantized}


# ----------------------------------------------------------------------------------------------
# export
# ----------------------------------------------------------------------------------------------
def export_int8_artifact(model_or_loaded: Any, out_dir: PathLike, recipe: Optional[str] = None,
                         source_info: Optional[Dict[str, Any]] = None,
                         fp32_safetensors_bytes: Optional[int] = None,
                         fidelity: Optional[Dict[str, Any]] = None,
                         overwrite: bool = True) -> Path:
    """Write an ``anima-sam2-int8`` artifact directory and return its path.

    Args:
        model_or_loaded: a torchao-quantized ``Sam2VideoModel`` (or a ``LoadedModel`` holding one).
            An unquantized network is quantized in place with ``recipe`` first.
        out_dir: the directory to write (created; existing artifact files are replaced).
        recipe: ``int8-dynamic`` | ``int8-weight-only``; checked against the model's weights when
            it is already quantized (None: taken from the weights).
        source_info: JSON-able description of the FP32 source (name, weights, is_dummy, seed...).
            ``is_dummy: True`` makes the model card say that all numbers are meaningless for accuracy.
        fp32_safetensors_bytes: measured size of the FP32 source as safetensors; measured here
            (temporary file) when not given.
        fidelity: optional result of ``quant.evaluate.evaluate`` written to ``fidelity.json``.
    """
    import torch
    from safetensors.torch import save_file

    model = unwrap_model(model_or_loaded)
    if not quantized_linear_names(model):
        if recipe is None:
            raise ValueError("the model is not quantized: pass recipe= to quantize it before export")
        from .quantize import quantize_model

        quantize_model(model, recipe)
    tensors, quantized, scheme, np_buffers = plain_state_dict(model)
    assert scheme is not None
    found = _recipe_of(scheme)
    if recipe is not None and recipe != found:
        raise ValueError(f"recipe {recipe!r} given but the model is quantized as {found!r}")
    recipe = found

    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    for fname in (QUANT_FILE, MODEL_FILE, CONFIG_FILE, PREPROCESSOR_FILE, FIDELITY_FILE, CARD_FILE):
        target = out / fname
        if target.exists():
            if not overwrite:
                raise FileExistsError(f"{target} exists")
            target.unlink()

    if fp32_safetensors_bytes is None:
        fp32_safetensors_bytes = measure_fp32_safetensors_bytes(model)

    # quantization.json is written last: a directory without it is not an artifact, so an
    # interrupted export never looks loadable.
    save_file(tensors, str(out / MODEL_FILE),
              metadata={"format": FORMAT, "format_version": str(FORMAT_VERSION)})
    model.config.to_json_file(str(out / CONFIG_FILE))
    image_size = int(getattr(model.config, "image_size", 1024))
    _write_json(out / PREPROCESSOR_FILE, preprocessor_config(image_size))

    files = {f: {"sha256": sha256_file(out / f), "bytes": os.path.getsize(out / f)} for f in VERIFIED_FILES}
    info: Dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "recipe": recipe,
        "scheme": scheme,
        "key_names": {"weight": "<module>" + WEIGHT_INT8, "scale": "<module>" + WEIGHT_SCALE,
                      "zero_point": "<module>" + WEIGHT_ZERO_POINT,
                      "dequantize": "(weight_int8 - weight_zero_point) * weight_scale"},
        "quantized_modules": quantized,
        "non_persistent_buffers": np_buffers,
        "parameters": count_parameters(model),
        "sizes": {"artifact_model_safetensors_bytes": files[MODEL_FILE]["bytes"],
                  "fp32_safetensors_bytes": int(fp32_safetensors_bytes),
                  "compression_ratio": round(int(fp32_safetensors_bytes) / files[MODEL_FILE]["bytes"], 3)},
        "torch_version": torch.__version__,
        "torchao_version": _torchao_version(),
        "source": dict(source_info or {}),
        "sha256": files[MODEL_FILE]["sha256"],
        "files": files,
    }
    _write_json(out / QUANT_FILE, info)
    if fidelity is not None:
        _write_json(out / FIDELITY_FILE, fidelity)
    from .model_card import write_model_card

    write_model_card(out)
    return out


# ----------------------------------------------------------------------------------------------
# pure-torch fallback
# ----------------------------------------------------------------------------------------------
def _int8_matmul(a_int8: Any, b_int8_t: Any) -> Any:
    """Exact int32 result of ``a_int8 @ b_int8_t`` (``torch._int_mm`` where it runs, else float64)."""
    import torch

    int_mm = getattr(torch, "_int_mm", None)
    if int_mm is not None:
        try:
            return int_mm(a_int8, b_int8_t)
        except Exception:  # older torch / unsupported shapes on this device
            pass
    # |a*b| <= 2**14 and K < 2**38: float64 accumulation is exact.
    return torch.mm(a_int8.to(torch.float64), b_int8_t.to(torch.float64)).to(torch.int32)


def _make_int8_linear_cls():
    import torch

    class Int8Linear(torch.nn.Module):
        """Pure-torch int8 Linear: what the artifact needs when torchao is missing or too old.

        Same arithmetic as torchao 0.18 ``Int8Tensor``'s ``F.linear``:

        * weight-only (``activation is None``): ``(x @ w_int8.T.to(x.dtype)) * scale + bias``;
          bit-identical to torchao.
        * dynamic (``int8-dynamic``): per-token (or per-tensor) symmetric int8 quantization of the
          activation (``scale = max(|x|) / 127.5``, ``clamp(round(x * (1/scale)), -128, 127)``),
          exact int32 matmul (``torch._int_mm``, float64 where that is unavailable), then
          ``* x_scale`` and ``* w_scale`` in the activation dtype. Same rounding and order of
          operations as torchao's CPU path, so outputs match it bit for bit on CPU in our tests;
          on CUDA torchao may use a fused kernel (differences at float rounding level).
        """

        def __init__(self, weight_int8, scale, zero_point, bias, activation, reduce_range=False):
            super().__init__()
            self.register_buffer("weight_int8", weight_int8)
            self.register_buffer("weight_scale", scale)
            self.register_buffer("weight_zero_point", zero_point)
            self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
            self.activation = activation  # None or {"granularity", "mapping", ...}
            self.reduce_range = bool(reduce_range)
            self.out_features, self.in_features = weight_int8.shape

        def extra_repr(self) -> str:
            mode = "dynamic-int8-act" if self.activation else "weight-only"
            return f"in_features={self.in_features}, out_features={self.out_features}, {mode}"

        def dequantize(self):
            w = self.weight_int8.to(torch.float32)
            if self.weight_zero_point is not None:
                w = w - self.weight_zero_point.to(torch.float32)
            return w * self.weight_scale.to(torch.float32)

        def _weight_int8_centered(self):
            if self.weight_zero_point is not None and bool((self.weight_zero_point != 0).any()):
                raise RuntimeError("Int8Linear supports symmetric (zero-point 0) weights only")
            return self.weight_int8

        def forward(self, x):
            out_dtype = x.dtype
            w = self._weight_int8_centered()
            lead = x.shape[:-1]
            if self.activation is None:
                m = torch.mm(x.reshape(-1, x.shape[-1]), w.t().to(out_dtype))
                y = m * self.weight_scale.to(m.dtype).flatten()
                y = y.reshape(*lead, self.out_features)
            else:
                if self.activation.get("mapping", "symmetric") != "symmetric":
                    raise RuntimeError("Int8Linear supports symmetric activation quantization only")
                qmin, qmax = -128, 127
                if self.activation.get("reduce_range"):
                    qmin, qmax = qmin // 2, qmax // 2
                if self.activation.get("granularity") == "per_tensor":
                    amin, amax = x.amin(), x.amax()
                    amin, amax = amin.reshape([1] * x.dim()), amax.reshape([1] * x.dim())
                else:
                    amin = x.amin(dim=-1, keepdim=True)
                    amax = x.amax(dim=-1, keepdim=True)
                amin = torch.min(amin, torch.zeros_like(amin))
                amax = torch.max(amax, torch.zeros_like(amax))
                amax = torch.max(-amin, amax)
                x_scale = amax / (float(qmax - qmin) / 2)
                x_scale = torch.clamp(x_scale, min=torch.finfo(torch.float32).eps).to(torch.float32)
                xq = torch.clamp(torch.round(x * (1.0 / x_scale)), qmin, qmax).to(torch.int8)
                xq = xq.reshape(-1, x.shape[-1])
                inter = torch.float32 if x_scale.dtype == torch.half else x_scale.dtype
                if x_scale.numel() == 1:
                    s = x_scale.reshape(1, 1).to(inter)
                else:
                    s = x_scale.reshape(-1, 1).to(inter)
                c = _int8_matmul(xq, w.contiguous().t())
                y = (c.to(inter) * s).to(out_dtype)
                y = (y * self.weight_scale.flatten()).reshape(*lead, y.shape[-1])
            if self.bias is not None:
                y += self.bias
            return y.to(out_dtype)

    return Int8Linear


_INT8_LINEAR = None


def _int8_linear_cls():
    global _INT8_LINEAR
    if _INT8_LINEAR is None:
        _INT8_LINEAR = _make_int8_linear_cls()
    return _INT8_LINEAR


def __getattr__(name: str) -> Any:
    """``Int8Linear`` is built on first access (importing this module does not import torch)."""
    if name == "Int8Linear":
        return _int8_linear_cls()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------
def _fail(path: Any, msg: str) -> ModelLoadError:
    return ModelLoadError(f"INT8 artifact {path}: {msg}")


def read_quantization_info(path: PathLike) -> Dict[str, Any]:
    """Parse and check ``quantization.json`` (format, version, recipe); ModelLoadError otherwise."""
    qpath = os.path.join(path, QUANT_FILE)
    if not os.path.isfile(qpath):
        raise _fail(path, f"{QUANT_FILE} is missing (not an {FORMAT} artifact)")
    try:
        with open(qpath, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot read {QUANT_FILE}: {exc}") from None
    if not isinstance(info, dict):
        raise _fail(path, f"{QUANT_FILE} is not a JSON object")
    if info.get("format") != FORMAT:
        raise _fail(path, f"{QUANT_FILE} format is {info.get('format')!r}, expected {FORMAT!r}")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(path, f"format_version {version!r} is not supported (this code reads "
                          f"{FORMAT_VERSION}); upgrade anima_sam2_ros or re-export the artifact")
    if info.get("recipe") not in RECIPES:
        raise _fail(path, f"unknown recipe {info.get('recipe')!r} (expected one of {', '.join(RECIPES)})")
    if not isinstance(info.get("quantized_modules"), list) or not isinstance(info.get("files"), dict):
        raise _fail(path, f"{QUANT_FILE} lacks quantized_modules / files")
    return info


def verify_artifact(path: PathLike, info: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Check presence, size and sha256 of every verified file; return the quantization info."""
    if not os.path.isdir(path):
        raise ModelLoadError(f"INT8 artifact {path}: no such directory")
    if info is None:
        info = read_quantization_info(path)
    files = info["files"]
    for fname in VERIFIED_FILES:
        fpath = os.path.join(path, fname)
        if not os.path.isfile(fpath):
            raise _fail(path, f"{fname} is missing")
        want = files.get(fname)
        if not isinstance(want, dict) or "sha256" not in want:
            raise _fail(path, f"{QUANT_FILE} has no checksum for {fname}")
        size = os.path.getsize(fpath)
        if "bytes" in want and size != want["bytes"]:
            raise _fail(path, f"{fname} is {size} bytes, {QUANT_FILE} says {want['bytes']} "
                              f"(truncated or replaced file)")
        digest = sha256_file(fpath)
        if digest != want["sha256"]:
            raise _fail(path, f"sha256 of {fname} is {digest[:16]}..., {QUANT_FILE} says "
                              f"{str(want['sha256'])[:16]}... (corrupted or tampered file)")
    if info.get("sha256") not in (None, files[MODEL_FILE]["sha256"]):
        raise _fail(path, f"{QUANT_FILE}: sha256 and files[{MODEL_FILE!r}] disagree")
    return info


def _read_config(path: PathLike):
    try:
        from transformers import Sam2VideoConfig

        config = Sam2VideoConfig.from_json_file(os.path.join(path, CONFIG_FILE))
    except Exception as exc:
        raise _fail(path, f"cannot read {CONFIG_FILE} as a Sam2VideoConfig: "
                          f"{type(exc).__name__}: {exc}") from None
    if getattr(config, "model_type", None) != "sam2_video":
        raise _fail(path, f"{CONFIG_FILE} model_type is {getattr(config, 'model_type', None)!r}, "
                          f"expected 'sam2_video'")
    return config


def _build_skeleton(config: Any):
    """``Sam2VideoModel(config)`` with every tensor on the meta device: no weight memory at all."""
    import torch
    from transformers import Sam2VideoModel

    with torch.device("meta"):
        model = Sam2VideoModel(config)
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
    bufs = _non_persistent_buffers(model)
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


def load_int8_artifact(path: PathLike, device: Any = "cpu", use_torchao: Optional[bool] = None):
    """Load an ``anima-sam2-int8`` artifact directory as an eval-mode ``Sam2VideoModel`` on ``device``.

    * verifies ``quantization.json`` (format, format_version) and the size + sha256 of
      ``model.safetensors``, ``config.json`` and ``preprocessor_config.json``;
    * builds the network skeleton on the meta device (no FP32 weights are ever allocated), then
      materialises the stored tensors straight onto ``device`` with ``safetensors`` (no pickle);
    * rebuilds each quantized Linear as a torchao ``Int8Tensor`` weight from its plain int8 weight
      + scale (outputs identical to the in-memory quantized model), or, when torchao is missing,
      too old, or ``use_torchao=False``, replaces the layer with the pure-torch :class:`Int8Linear`.

    Raises:
        ModelLoadError: missing/garbage/tampered files, unsupported format_version, tensors whose
            names, shapes or dtypes do not match the architecture in ``config.json``.
    """
    import torch

    path = os.fspath(Path(path).expanduser())
    info = verify_artifact(path)
    config = _read_config(path)
    try:
        dev = torch.device(device if device not in (None, "auto") else
                           ("cuda" if torch.cuda.is_available() else "cpu"))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise _fail(path, f"invalid device {device!r}: {exc}") from None

    int8_tensor, kwargs_cls = _int8_tensor_cls()
    if use_torchao is None:
        use_torchao = int8_tensor is not None
    elif use_torchao and int8_tensor is None:
        raise _fail(path, "use_torchao=True but torchao's Int8Tensor is not importable")
    scheme = info.get("scheme") or {}
    act = scheme.get("activation")
    if (info["recipe"] == "int8-dynamic") != bool(act):
        raise _fail(path, f"recipe {info['recipe']!r} contradicts scheme.activation={act!r}")

    try:
        model = _build_skeleton(config)
    except Exception as exc:
        raise _fail(path, f"cannot build the network from {CONFIG_FILE}: "
                          f"{type(exc).__name__}: {exc}") from None
    quantized = [str(q) for q in info["quantized_modules"]]
    for name in quantized:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            mod = None
        if not isinstance(mod, torch.nn.Linear):
            raise _fail(path, f"quantized module {name!r} is not an nn.Linear of this architecture")
    np_buffers = [str(b) for b in info.get("non_persistent_buffers", [])]
    expected = _expected_keys(model, quantized, np_buffers)
    optional = {n + suffix for n in quantized for suffix in (WEIGHT_SCALE, WEIGHT_ZERO_POINT)}

    from safetensors import safe_open

    mpath = os.path.join(path, MODEL_FILE)
    try:
        handle = safe_open(mpath, framework="pt", device=str(dev))
    except Exception as exc:
        raise _fail(path, f"{MODEL_FILE} is not a readable safetensors file: "
                          f"{type(exc).__name__}: {exc}") from None
    with handle as fh:
        stored = set(fh.keys())
        missing = sorted(k for k in expected if k not in stored)
        missing += sorted(n + WEIGHT_SCALE for n in quantized if n + WEIGHT_SCALE not in stored)
        unexpected = sorted(k for k in stored if k not in expected and k not in optional)
        if missing or unexpected:
            raise _fail(path, f"{MODEL_FILE} does not match the architecture in {CONFIG_FILE}: "
                              f"{len(missing)} missing tensors {missing[:3]}, "
                              f"{len(unexpected)} unexpected tensors {unexpected[:3]}")

        def get(key: str):
            try:
                return fh.get_tensor(key)
            except Exception as exc:
                raise _fail(path, f"cannot read tensor {key!r}: {type(exc).__name__}: {exc}") from None

        for key, shape in expected.items():
            mod_name, _, leaf = key.rpartition(".")
            if key.endswith(WEIGHT_INT8):
                continue
            value = get(key)
            if tuple(value.shape) != shape:
                raise _fail(path, f"tensor {key!r} has shape {tuple(value.shape)}, the architecture "
                                  f"expects {shape}")
            _set_tensor(model, key, value)

        int8_linear = None if use_torchao else _int8_linear_cls()
        for name in quantized:
            qdata = get(name + WEIGHT_INT8)
            shape = expected[name + WEIGHT_INT8]
            if qdata.dtype != torch.int8 or tuple(qdata.shape) != shape:
                raise _fail(path, f"{name}{WEIGHT_INT8} is {qdata.dtype} {tuple(qdata.shape)}, expected "
                                  f"torch.int8 {shape}")
            scale = get(name + WEIGHT_SCALE)
            out_f, in_f = shape
            if scale.shape == (out_f, 1):
                block = [1, in_f]
            elif scale.numel() == 1 and scale.dim() == 2:
                block = [out_f, in_f]
            else:
                raise _fail(path, f"{name}{WEIGHT_SCALE} has shape {tuple(scale.shape)}, expected "
                                  f"({out_f}, 1) or (1, 1)")
            if not scale.is_floating_point():
                raise _fail(path, f"{name}{WEIGHT_SCALE} has dtype {scale.dtype}, expected a float")
            zero_point = get(name + WEIGHT_ZERO_POINT) if name + WEIGHT_ZERO_POINT in stored else None
            if zero_point is not None and tuple(zero_point.shape) != tuple(scale.shape):
                raise _fail(path, f"{name}{WEIGHT_ZERO_POINT} shape {tuple(zero_point.shape)} != scale shape")
            mod = model.get_submodule(name)
            bias = mod.bias if mod.bias is not None else None
            if use_torchao:
                act_kwargs = _act_kwargs(act, kwargs_cls) if act else None
                weight = int8_tensor(qdata, scale, block, torch.float32, zero_point=zero_point,
                                    act_quant_kwargs=act_kwargs,
                                    reduce_range=bool(scheme.get("reduce_range", False)))
                mod.weight = torch.nn.Parameter(weight, requires_grad=False)
            else:
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                new = int8_linear(qdata, scale, zero_point, None if bias is None else bias.data, act,
                                 reduce_range=bool(scheme.get("reduce_range", False)))
                setattr(parent, child, new)

    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if leftover:
        raise _fail(path, f"tensors not provided by {MODEL_FILE}: {leftover[:5]}")
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval()


def _act_kwargs(act: Dict[str, Any], kwargs_cls: Any):
    from torchao.quantization.granularity import PerRow, PerTensor
    from torchao.quantization.quant_primitives import MappingType

    gran = PerTensor() if act.get("granularity") == "per_tensor" else PerRow()
    mapping = MappingType.ASYMMETRIC if act.get("mapping") == "asymmetric" else MappingType.SYMMETRIC
    return kwargs_cls(granularity=gran, mapping_type=mapping,
                      reduce_range=bool(act.get("reduce_range", False)))
