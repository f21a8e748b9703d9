"""Write an ``anima-sam2-int8`` artifact directory (format: ``engine/int8_format.py``).

The engine reads artifacts (``engine/int8_loader.py``); writing them, measuring sizes and
generating the model card is tooling and lives here.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from anima_sam2_ros.engine.int8_format import (
    CARD_FILE,
    CONFIG_FILE,
    FIDELITY_FILE,
    FORMAT,
    FORMAT_VERSION,
    MODEL_FILE,
    PREPROCESSOR_FILE,
    QUANT_FILE,
    VERIFIED_FILES,
    WEIGHT_INT8,
    WEIGHT_SCALE,
    WEIGHT_ZERO_POINT,
    PathLike,
    sha256_file,
)
from anima_sam2_ros.engine.preprocess import IMAGENET_MEAN, IMAGENET_STD
from anima_sam2_ros.engine.torchao_support import int8_tensor_cls, torchao_version

from .flatten import plain_state_dict, quantized_linear_names, recipe_of, unwrap_model


def _dequantized_fp32_state(model: Any) -> Dict[str, Any]:
    """The FP32 state dict of the same network (int8 weights dequantised), for size measurement."""
    import torch

    from anima_sam2_ros.engine.int8_linear import Int8Linear

    int8_tensor, _ = int8_tensor_cls()
    fallback = {name: mod for name, mod in model.named_modules() if isinstance(mod, Int8Linear)}
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
    size = [int(image_size), int(image_size)]
    return {
        "image_size": int(image_size),
        "input": "uint8 RGB, HxWx3",
        "rescale_factor": 1.0 / 255.0,
        "resize": {"mode": "bilinear", "antialias": True, "align_corners": False, "size": size,
                   "applied_to": "float pixels in [0, 1] (torch.nn.functional.interpolate)",
                   "used_by": "Segmenter (Meta's SAM2ImagePredictor)"},
        "video_resize": {"mode": "bicubic (PIL Image.resize, 8-bit)", "size": size,
                         "applied_to": "uint8 pixels, before rescaling",
                         "used_by": "Tracker (Meta's SAM 2 video predictor)"},
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
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
    found = recipe_of(scheme)
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
        "torchao_version": torchao_version(),
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
