"""Generate the ``README.md`` model card of an INT8 artifact from its measured metadata.

Everything in the card is read from ``quantization.json`` (sizes measured at export, parameter
counts, recipe, versions, source) and ``fidelity.json`` (measured by ``evaluate.py``); nothing is
typed in by hand.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from anima_sam2_ros.engine.int8_format import CARD_FILE, FIDELITY_FILE, FORMAT, MODEL_FILE, QUANT_FILE

PathLike = Union[str, "os.PathLike[str]"]

_RECIPE_TEXT = {
    "int8-dynamic": "torchao `Int8DynamicActivationInt8WeightConfig`: int8 weights with one symmetric "
                    "scale per output channel; activations quantized to int8 per token at run time "
                    "(int8 x int8 matmul with int32 accumulation).",
    "int8-weight-only": "torchao `Int8WeightOnlyConfig`: int8 weights with one symmetric scale per "
                        "output channel; activations stay in floating point.",
}


def _mb(n: Optional[float]) -> str:
    return "n/a" if n is None else f"{n / 1e6:.2f} MB"


def _fmt(x: Any, nd: int = 4) -> str:
    if isinstance(x, float):
        return f"{x:.{nd}f}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"
    return str(x)


def _fidelity_lines(fid: Dict[str, Any]) -> List[str]:
    lines = [f"Compared: A = {fid.get('a', 'INT8')} vs B = {fid.get('b', 'FP32')} "
             f"on {fid.get('num_scenes', '?')} synthetic scenes (shapes on textured backgrounds, "
             f"sizes {', '.join('x'.join(str(v) for v in s) for s in fid.get('image_sizes', []))}).", ""]
    lines += ["| prompt | n | mask IoU mean | mask IoU min | logit rel. error mean | max "
              "| object present (B) |",
              "|---|---|---|---|---|---|---|"]
    for kind, row in fid.get("image", {}).items():
        lines.append(f"| {kind} | {row.get('n')} | {_fmt(row.get('iou_mean'))} | "
                     f"{_fmt(row.get('iou_min'))} | "
                     f"{_fmt(row.get('logit_rel_err_mean'))} | {_fmt(row.get('logit_rel_err_max'))} | "
                     f"{_fmt(row.get('object_present_fraction'), 2)} |")
    lines += ["", "Where the reference's object-score logit is <= 0, transformers replaces the mask logits "
                  "by a constant, so IoU and logit error of those prompts are trivially perfect: read "
                  "them together with the 'object present' fraction."]
    if fid.get("encoder_rel_err_mean") is not None:
        lines += ["", f"Image-encoder feature relative error (mean): {_fmt(fid['encoder_rel_err_mean'])}."]
    trk = fid.get("tracking")
    if trk:
        lines += ["", f"Tracking ({trk.get('method', '')}): {trk.get('num_frames')} frames, "
                      f"{trk.get('num_objects')} objects: mask IoU mean {_fmt(trk.get('iou_mean'))}, "
                      f"min {_fmt(trk.get('iou_min'))}, last frame {_fmt(trk.get('iou_last'))}."]
    return lines


def render_model_card(info: Dict[str, Any], fidelity: Optional[Dict[str, Any]] = None) -> str:
    """Markdown text of the card for a ``quantization.json`` dict (and optional fidelity report)."""
    src = info.get("source") or {}
    dummy = bool(src.get("is_dummy"))
    sizes = info.get("sizes") or {}
    params = info.get("parameters") or {}
    recipe = info.get("recipe", "?")
    model = src.get("model", "SAM 2.1")
    lines = [f"# {model} — INT8 ({recipe})", ""]
    if dummy:
        lines += ["> **DUMMY WEIGHTS.** This artifact was quantized from randomly initialised "
                  f"(seed {src.get('seed')}) weights. Its masks are meaningless and the fidelity "
                  "numbers below say nothing about the accuracy of the real model: they only "
                  "show that the quantize → export → reload pipeline works.", ""]
    lines += [
        f"SAM 2.1 ({model}) as a transformers `Sam2VideoModel` with its `nn.Linear` layers "
        f"quantized to int8, stored in the `{FORMAT}` format (format_version "
        f"{info.get('format_version')}) of anima_sam2_ros.", "",
        "## Quantization", "",
        f"- Recipe: `{recipe}` — {_RECIPE_TEXT.get(recipe, '')}",
        f"- Quantized layers: {len(info.get('quantized_modules', []))} `nn.Linear` "
        "(vision encoder, mask decoder, memory attention, memory encoder, object-pointer MLPs); "
        "convolutions, layer norms, embeddings and biases stay FP32.",
        f"- Source weights: `{src.get('weights', '?')}`" + (" (dummy)" if dummy else ""),
        f"- Made with torch {info.get('torch_version')}, torchao {info.get('torchao_version')}.",
        "",
        "## Size (measured)", "",
        "| | bytes | MB |", "|---|---|---|",
        f"| `{MODEL_FILE}` (this artifact) | {sizes.get('artifact_model_safetensors_bytes')} | "
        f"{_mb(sizes.get('artifact_model_safetensors_bytes'))} |",
        f"| FP32 safetensors of the same network | {sizes.get('fp32_safetensors_bytes')} | "
        f"{_mb(sizes.get('fp32_safetensors_bytes'))} |",
        "", f"Compression ratio: **{sizes.get('compression_ratio')}x**. The FP32 size was measured by "
        "writing the FP32 state dict of the same network to a temporary safetensors file.", "",
        f"Parameters: {params.get('total', 0):,} in total, {params.get('int8', 0):,} stored as int8, "
        f"{params.get('other', 0):,} kept FP32.", "",
        "## Fidelity (measured, INT8 vs FP32)", "",
    ]
    if fidelity:
        if dummy or fidelity.get("is_dummy"):
            lines += ["*Dummy weights: these numbers say little about real accuracy.*", ""]
        lines += _fidelity_lines(fidelity)
    else:
        lines += ["Not measured (exported with `--no-eval`). Run "
                  "`anima-sam2 evaluate --a <this dir> --b <fp32 weights>`."]
    lines += [
        "", "## Files", "",
        f"- `{MODEL_FILE}`: plain tensors. For each quantized Linear `P`: `P.weight_int8` (int8, "
        "out x in), `P.weight_scale` (float32, out x 1), `P.weight_zero_point` (int8, optional), "
        "`P.bias`; dequantised weight = (weight_int8 - weight_zero_point) * weight_scale. All other "
        "tensors under their `state_dict` names. Loads with `safetensors` alone, with any torchao or none.",
        "- `config.json`: transformers `Sam2VideoConfig`.",
        "- `preprocessor_config.json`: uint8 RGB → [0, 1] → bilinear antialias resize → ImageNet mean/std "
        "(segmentation); tracking resizes the uint8 frame bicubic as PIL first (Meta's video predictor).",
        f"- `{QUANT_FILE}`: format, recipe, quantized modules, versions, source, sizes, "
        "sha256 of every file.",
        f"- `{FIDELITY_FILE}`: the fidelity numbers above.",
        "", "## Use", "", "```python",
        "from anima_sam2_ros.engine import load_model",
        f"model = load_model(\"{model}-int8\", weights=\"<this directory>\")",
        "```", "",
        "or `anima_sam2_ros.engine.int8_loader.load_int8_artifact(\"<this directory>\", \"cpu\")` "
        "for the bare `Sam2VideoModel`. The loader checks the sha256 of every file and never "
        "unpickles anything.",
        "",
    ]
    return "\n".join(lines)


def write_model_card(artifact_dir: PathLike) -> Path:
    """(Re)write ``README.md`` of an artifact from its ``quantization.json`` / ``fidelity.json``."""
    root = Path(artifact_dir)
    info = json.loads((root / QUANT_FILE).read_text(encoding="utf-8"))
    fid_path = root / FIDELITY_FILE
    fidelity = json.loads(fid_path.read_text(encoding="utf-8")) if fid_path.is_file() else None
    out = root / CARD_FILE
    out.write_text(render_model_card(info, fidelity), encoding="utf-8")
    return out
