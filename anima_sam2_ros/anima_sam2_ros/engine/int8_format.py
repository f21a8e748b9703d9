"""The ``anima-sam2-int8`` artifact format: names, location, and the checks before trusting it.

File and key names, where named artifacts live, and what a reader checks before it trusts a
directory (``quantization.json``, sizes, sha256).

Layout (format_version 1)::

    <dir>/model.safetensors        plain tensors (key names below)
    <dir>/config.json              transformers Sam2VideoConfig (``to_json_file``)
    <dir>/preprocessor_config.json what the engine does to a frame before the network
    <dir>/quantization.json        format, format_version, recipe, quantized_modules, scheme,
                                   torch/torchao versions, source, sha256 + size of every file above
    <dir>/fidelity.json            (optional) INT8 vs FP32 fidelity numbers (``quant/evaluate.py``)
    <dir>/README.md                generated model card (``quant/model_card.py``), not verified

For every quantized ``nn.Linear`` at module path ``P`` (``quantization.json["quantized_modules"]``):
``P.weight_int8`` int8 (out, in); ``P.weight_scale`` float32 (out, 1) per output channel, or
(1, 1) per tensor; optional ``P.weight_zero_point`` int8 like the scale (0 for symmetric);
``P.bias`` unchanged. Dequantised weight = (weight_int8 - weight_zero_point) * weight_scale.
Every other tensor is stored under its ``state_dict`` name; the non-persistent buffers (RoPE
``inv_freq`` / ``position_ids`` of the memory attention) too, so the network is rebuilt from the
file alone (``quantization.json["non_persistent_buffers"]`` lists them).

This module is the engine's (the robot reads artifacts); ``quant/export.py`` writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .errors import ModelLoadError

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
HOME_ENV = "ANIMA_SAM2_HOME"

PathLike = Union[str, "os.PathLike[str]"]


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
    not exist: ``load_model`` names it in its error, ``anima-sam2 quantize --out`` defaults to it.
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


def fail(path: Any, msg: str) -> ModelLoadError:
    """The error every artifact check raises: the directory, then the reason."""
    return ModelLoadError(f"INT8 artifact {path}: {msg}")


def read_quantization_info(path: PathLike) -> Dict[str, Any]:
    """Parse and check ``quantization.json`` (format, version, recipe); ModelLoadError otherwise."""
    qpath = os.path.join(path, QUANT_FILE)
    if not os.path.isfile(qpath):
        raise fail(path, f"{QUANT_FILE} is missing (not an {FORMAT} artifact)")
    try:
        with open(qpath, encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise fail(path, f"cannot read {QUANT_FILE}: {exc}") from None
    if not isinstance(info, dict):
        raise fail(path, f"{QUANT_FILE} is not a JSON object")
    if info.get("format") != FORMAT:
        raise fail(path, f"{QUANT_FILE} format is {info.get('format')!r}, expected {FORMAT!r}")
    version = info.get("format_version")
    if version != FORMAT_VERSION:
        raise fail(path, f"format_version {version!r} is not supported (this code reads "
                         f"{FORMAT_VERSION}); upgrade anima_sam2_ros or re-export the artifact")
    if info.get("recipe") not in RECIPES:
        raise fail(path, f"unknown recipe {info.get('recipe')!r} (expected one of {', '.join(RECIPES)})")
    if not isinstance(info.get("quantized_modules"), list) or not isinstance(info.get("files"), dict):
        raise fail(path, f"{QUANT_FILE} lacks quantized_modules / files")
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
            raise fail(path, f"{fname} is missing")
        want = files.get(fname)
        if not isinstance(want, dict) or "sha256" not in want:
            raise fail(path, f"{QUANT_FILE} has no checksum for {fname}")
        size = os.path.getsize(fpath)
        if "bytes" in want and size != want["bytes"]:
            raise fail(path, f"{fname} is {size} bytes, {QUANT_FILE} says {want['bytes']} "
                             f"(truncated or replaced file)")
        digest = sha256_file(fpath)
        if digest != want["sha256"]:
            raise fail(path, f"sha256 of {fname} is {digest[:16]}..., {QUANT_FILE} says "
                             f"{str(want['sha256'])[:16]}... (corrupted or tampered file)")
    if info.get("sha256") not in (None, files[MODEL_FILE]["sha256"]):
        raise fail(path, f"{QUANT_FILE}: sha256 and files[{MODEL_FILE!r}] disagree")
    return info


def non_persistent_buffers(model: Any) -> Dict[str, Any]:
    """Buffers ``state_dict`` omits (RoPE tables), by module path: the artifact stores them too."""
    out = {}
    for mod_name, mod in model.named_modules():
        for buf_name in getattr(mod, "_non_persistent_buffers_set", ()):
            buf = mod._buffers.get(buf_name)
            if buf is not None:
                out[f"{mod_name}.{buf_name}" if mod_name else buf_name] = buf
    return out
