"""``load_model``: build a SAM 2.1 network, load its weights, set precision and device.

Weights sources (the ``weights`` argument):

* ``"dummy"``: seeded random initialisation (``seed``); masks are meaningless, a WARNING says so.
* ``None``: the registry's default Hugging Face id (e.g. ``facebook/sam2.1-hiera-small``).
* a local Hugging Face-format directory: ``config.json`` + ``*.safetensors`` (sharded is fine);
  a directory holding only ``pytorch_model.bin`` is read with ``torch.load(weights_only=True)``,
  never with unrestricted pickle. The config's architecture must match the requested name.
* a single ``*.safetensors`` file with the requested architecture's tensor names.
* a Hugging Face id (``org/name``): resolved only from the local cache (``$HF_HOME/hub``),
  never downloaded.
* an INT8 artifact directory (contains ``quantization.json``): ``int8_loader.load_int8_artifact``.
* Meta's own checkpoint, ``sam2.1_hiera_*.pt`` (``{"model": state_dict}`` in Meta's names):
  ``meta_checkpoint`` maps it onto the network (``torch.load(weights_only=True)``).
* the model card's artifact: a directory with ``model.safetensors`` (image-only) and optionally
  ``model_int8.pt`` (see ``image_only``).

Every tensor of the network must be present (strict), with its shape. An image-only ``Sam2Model``
checkpoint (no memory modules) loads into a ``Sam2Model``: it segments, and its ``LoadedModel``
has ``can_track`` False, so ``Tracker`` refuses it saying which weights track.

Precision: ``fp32``; ``bf16`` / ``fp16`` run under ``torch.autocast`` with fp32 weights (the
network mixes dtypes on purpose: transformers keeps memory features in bfloat16, positional
encodings, sigmoids and stability scores in float32; autocast keeps layer norms and softmax in
fp32 while matmuls/convolutions run in half precision, which a blanket ``.half()`` of the weights
would not); ``int8``: torchao ``Int8DynamicActivationInt8WeightConfig`` on the ``nn.Linear``
layers of the fp32 network (unless the weights already are an INT8 artifact).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from .errors import ModelLoadError
from .image_only import CARD_FP32_FILE, CARD_INT8_FILE, is_card_dir, tracking_refusal
from .meta_checkpoint import convert_meta_state, is_meta_checkpoint_path, read_meta_checkpoint
from .registry import ModelSpec, architecture_mismatch, build_config, identify_backbone, resolve

LOG = logging.getLogger("anima_sam2_ros.engine")

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


class LoadedModel:
    """A ready network plus what callers need to run it (device, precision, input size)."""

    def __init__(self, model: Any, *, name: str, device: Any, precision: str, image_size: int,
                 weights_source: str, is_dummy: bool, tracking_refusal: str | None = None) -> None:
        """Wrap an eval-mode ``Sam2VideoModel`` (or image-only ``Sam2Model``) already on ``device``.

        ``tracking_refusal``: why this network cannot track (image-only weights), else None.
        """
        import torch

        self.model = model
        self.tracking_refusal = tracking_refusal
        self.can_track = tracking_refusal is None
        self.name = name
        self.device = torch.device(device)
        self.precision = precision
        self.image_size = int(image_size)
        self.weights_source = weights_source
        self.is_dummy = bool(is_dummy)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)

    def __repr__(self) -> str:
        """Short description (no tensors)."""
        return (f"LoadedModel(name={self.name!r}, precision={self.precision!r}, device={self.device}, "
                f"image_size={self.image_size}, weights={self.weights_source!r}, dummy={self.is_dummy}"
                + ("" if self.can_track else ", image-only") + ")")

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """``torch.inference_mode()`` plus ``torch.autocast`` for bf16/fp16."""
        import torch

        with torch.inference_mode():
            if self.precision in ("bf16", "fp16"):
                with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                    yield
            else:
                yield

    def release(self) -> None:
        """Drop the network and free device memory; the object is unusable afterwards."""
        import gc

        import torch

        self.model = None
        gc.collect()
        if self.device.type == "cuda" and torch.cuda.is_available():
            torch.cuda.empty_cache()


def _resolve_device(device: Any):
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but CUDA is not available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelLoadError(f"device {device!r} does not exist ({torch.cuda.device_count()} GPUs)")
    if dev.type not in ("cpu", "cuda"):
        raise ModelLoadError(f"unsupported device {device!r} (auto, cpu, cuda, cuda:N)")
    return dev


def _build(spec: ModelSpec, seed: int):
    import torch

    from .hf_import import transformers_sam2

    video_model_cls = transformers_sam2().Sam2VideoModel
    config = build_config(spec)
    # Seed the initialisation without disturbing the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = video_model_cls(config)
    return model.eval()


def hf_cache_dir() -> str:
    """The Hugging Face hub cache directory that ``load_model`` reads (never writes)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:  # pragma: no cover - huggingface_hub always ships with transformers
        home = os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface"))
        return os.path.join(home, "hub")


def _resolve_hf_id(repo_id: str) -> str:
    """Local snapshot directory of ``repo_id`` from the HF cache, without network access."""
    cache = hf_cache_dir()
    expected = os.path.join(cache, "models--" + repo_id.replace("/", "--"))
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(repo_id, local_files_only=True, cache_dir=cache)
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, HFValidationError, offline...
        raise ModelLoadError(
            f"weights {repo_id!r}: no such local directory, and not in the local Hugging Face cache "
            f"(this engine never downloads). Expected them under {expected} "
            f"(cache: {cache}; set HF_HOME to move it). "
            f"Download them on a connected machine with `hf download {repo_id}` and copy "
            f"the cache, or pass weights=<local directory>. ({type(exc).__name__})") from None
    return path


def _read_state_dict_dir(path: str) -> dict[str, Any]:
    files = sorted(f for f in os.listdir(path) if f.endswith(".safetensors"))
    if files:
        state: dict[str, Any] = {}
        for fname in files:
            state.update(_read_safetensors(os.path.join(path, fname)))
        return state
    binary = os.path.join(path, "pytorch_model.bin")
    if os.path.isfile(binary):
        import torch

        try:
            state = torch.load(binary, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError...
            raise ModelLoadError(f"cannot read {binary} (weights_only torch.load): "
                                 f"{type(exc).__name__}: {exc}") from None
        if not isinstance(state, dict):
            raise ModelLoadError(f"{binary} does not hold a state dict")
        return state
    raise ModelLoadError(f"no weights in {path}: expected *.safetensors (or pytorch_model.bin)")


def _read_safetensors(path: str) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...
        raise ModelLoadError(f"cannot read safetensors file {path}: {type(exc).__name__}: {exc}") from None


def _read_config(path: str) -> dict[str, Any]:
    cfg_path = os.path.join(path, "config.json")
    if not os.path.isfile(cfg_path):
        raise ModelLoadError(f"{path} has no config.json (expected a Hugging Face-format model directory)")
    try:
        with open(cfg_path, encoding="utf-8") as fh:
            config = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {cfg_path}: {exc}") from None
    if not isinstance(config, dict):
        raise ModelLoadError(f"{cfg_path} is not a JSON object")
    return config


def _model_from_state(spec: ModelSpec, state: dict[str, Any], source: str, seed: int) -> tuple[Any, bool]:
    """The network for a checkpoint: ``(Sam2VideoModel, False)`` or, image-only, ``(Sam2Model, True)``."""
    from .image_only import build_image_model, is_image_only

    model = _build(spec, seed)
    missing = [k for k in model.state_dict() if k not in state]
    if is_image_only(missing):
        LOG.warning("weights %s are image-only (no memory modules): segmentation only, tracking is "
                    "refused", source)
        model = build_image_model(spec, seed)
        _load_state(model, state, source)
        return model, True
    _load_state(model, state, source)
    return model, False


def _load_state(model: Any, state: dict[str, Any], source: str) -> None:
    import torch

    own = model.state_dict()
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{source}: entries that are not tensors: {bad[:5]}")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ModelLoadError(
            f"{source} does not match the architecture: {len(missing)} missing tensors "
            f"{missing[:3]}, {len(unexpected)} unexpected tensors {unexpected[:3]}")
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise ModelLoadError(f"{source}: tensor shapes do not match the architecture: {shapes[:3]}")
    non_finite = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if non_finite:
        raise ModelLoadError(f"{source}: non-finite values in {non_finite[:3]}")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, ValueError) as exc:  # pragma: no cover - checked above
        raise ModelLoadError(f"{source}: {type(exc).__name__}: {exc}") from None


def _load_int8_artifact(path: str, device: Any):
    from .int8_loader import load_int8_artifact

    try:
        return load_int8_artifact(path, device)
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - foreign code: report any failure as a load error
        raise ModelLoadError(f"cannot load INT8 artifact {path}: {type(exc).__name__}: {exc}") from None


def load_model(name: str = "sam2.1-hiera-small", weights: str | None = None, precision: str = "fp32",
               device: Any = "auto", seed: int = 0) -> LoadedModel:
    """Build and load a SAM 2.1 video model.

    Args:
        name: registry name (``sam2.1-hiera-{tiny,small,base-plus,large}``, optional ``-int8``
            suffix, or ``test-micro``).
        weights: ``"dummy"``, ``None`` (the registry default HF id; for an ``-int8`` name its
            artifact in ``int8_format.default_artifact_dir`` when exported there), a local
            directory / safetensors file, an HF id in the local cache, or an INT8 artifact
            directory.
        precision: ``fp32`` | ``bf16`` | ``fp16`` | ``int8`` (an ``-int8`` name implies int8).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        seed: initialisation seed for dummy weights.

    Raises:
        ModelLoadError: unknown name/precision/device, weights missing, corrupt or of another
            architecture.
    """
    spec, int8_name = resolve(name)
    precision = str(precision).lower()
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if int8_name:
        if precision not in ("fp32", "int8"):
            raise ModelLoadError(f"{name!r} is an int8 model; precision {precision!r} contradicts it")
        precision = "int8"
    dev = _resolve_device(device)

    artifact_hint = ""
    if weights is None and int8_name:
        # A named INT8 model is its artifact when one was exported to the default place
        # (`anima-sam2 quantize` without --out); else the FP32 weights, quantized on load.
        from .int8_format import default_artifact_dir, is_int8_artifact

        artifact_dir = default_artifact_dir(name)
        if is_int8_artifact(artifact_dir):
            weights = str(artifact_dir)
        else:
            artifact_hint = f" (and no INT8 artifact in {artifact_dir})"
    if weights is None:
        if spec.hf_id is None:
            raise ModelLoadError(
                f"{spec.name!r} has no published weights{artifact_hint}; pass weights='dummy' or a directory")
        weights = spec.hf_id
    if not isinstance(weights, (str, os.PathLike)):
        raise ModelLoadError(f"weights must be a string or path, got {type(weights).__name__}")
    weights = os.fspath(weights)

    is_dummy = False
    already_int8 = False
    image_only = False
    if weights == "dummy":
        model = _build(spec, seed)
        is_dummy = True
        source = "dummy"
        LOG.warning("=" * 72)
        LOG.warning("MODEL %s HAS DUMMY (RANDOM) WEIGHTS: masks are meaningless. Use only for tests "
                    "and benchmarks.", spec.name)
        LOG.warning("=" * 72)
    else:
        path = os.path.expanduser(weights)
        if os.path.isdir(path) or os.path.isfile(path):
            source = os.path.abspath(path)
        elif _HF_ID.match(weights) and not weights.startswith((".", "~")):
            source = weights
            try:
                path = _resolve_hf_id(weights)
            except ModelLoadError as exc:
                raise ModelLoadError(f"{exc}{artifact_hint}") from None
        else:
            raise ModelLoadError(f"weights {weights!r}: no such file or directory, and not an HF id")

        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "quantization.json")):
            model = _load_int8_artifact(path, dev)
            config = getattr(model, "config", None)
            mismatch = architecture_mismatch(spec, config.to_dict()) if config is not None else None
            if mismatch:
                raise ModelLoadError(f"INT8 artifact {source} is not a {spec.name} model: {mismatch}")
            already_int8 = True
            if precision != "int8":
                LOG.info("weights %s are an INT8 artifact: precision set to int8", source)
                precision = "int8"
        elif is_card_dir(path):
            model, image_only = _model_from_state(spec, _read_safetensors(os.path.join(path, CARD_FP32_FILE)),
                                                  source, seed)
            if precision == "int8" and image_only and os.path.isfile(os.path.join(path, CARD_INT8_FILE)):
                from .image_only import load_card_int8

                already_int8 = load_card_int8(model, path, source)
                if already_int8:
                    try:
                        model = model.to(dev)
                    except (RuntimeError, ValueError) as exc:
                        raise ModelLoadError(f"cannot move {spec.name} to {dev}: {exc}") from None
                else:
                    precision = "fp32"
        elif os.path.isdir(path):
            config = _read_config(path)
            mismatch = architecture_mismatch(spec, config)
            if mismatch:
                raise ModelLoadError(f"{source} is not a {spec.name} checkpoint: {mismatch}")
            model, image_only = _model_from_state(spec, _read_state_dict_dir(path), source, seed)
        elif path.endswith(".safetensors"):
            model, image_only = _model_from_state(spec, _read_safetensors(path), source, seed)
        elif is_meta_checkpoint_path(path):
            model = _build(spec, seed)
            state = convert_meta_state(read_meta_checkpoint(path), model.state_dict(), source,
                                       identify_backbone, spec.name)
            _load_state(model, state, source)
        else:
            raise ModelLoadError(
                f"{source}: unsupported weights file (expected a directory, *.safetensors, or Meta's "
                f"sam2.1_hiera_*.pt)")

    model = model.eval()
    if not already_int8:
        try:
            model = model.to(dev)
        except (RuntimeError, ValueError) as exc:  # e.g. CUDA out of memory
            raise ModelLoadError(f"cannot move {spec.name} to {dev}: {type(exc).__name__}: {exc}") from None
        if precision == "int8":
            from .torchao_support import quantize_dynamic_int8

            quantize_dynamic_int8(model)
    for param in model.parameters():
        param.requires_grad_(False)
    from .position_cache import cache_position_encodings

    cache_position_encodings(model)  # the vision neck's encodings, once per shape (not per frame)
    if precision == "int8" and dev.type == "cpu":
        warn_int8_on_cpu(cpu_int8_dot_flags())
    return LoadedModel(model, name=spec.name + ("-int8" if precision == "int8" else ""), device=dev,
                       precision=precision, image_size=spec.image_size, weights_source=source,
                       is_dummy=is_dummy,
                       tracking_refusal=tracking_refusal(spec, source) if image_only else None)


# x86 flags of the int8 dot-product instructions behind a fast ``aten::_int_mm`` (oneDNN). Other
# CPUs (aarch64 included) are not measured, so they get the warning.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_dot_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str] | None:
    """The ``INT8_DOT_FLAGS`` this CPU has, or None when the flags cannot be read (not Linux)."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(flag for flag in value.split() if flag in INT8_DOT_FLAGS)
    return found


def warn_int8_on_cpu(flags: set[str] | None) -> None:
    """INT8 speed on a CPU depends on its int8 dot-product instructions: say what to expect.

    Measured with ``anima-sam2 bench`` (hiera-small, 1024x1024, 2 cores, torch 2.13.0): on an
    AMD EPYC with AVX-512 VNNI the int8 encoder took 0.77-0.85x the fp32 time; on the CI machine of
    2026-11-25 (an AMD EPYC whose flags were not recorded) 6.6x.
    """
    if flags:
        LOG.info("precision int8 on the CPU: int8 matmuls use %s", ", ".join(sorted(flags)))
        return
    LOG.warning("precision int8 on a CPU %s (VNNI/AMX) can be several times SLOWER than fp32 "
                "(measured 6.6x in the encoder); it saves memory. Compare `anima-sam2 bench "
                "--precision fp32` with `--precision int8` on this machine.",
                "without x86 int8 dot-product instructions" if flags is not None
                else "whose int8 instructions cannot be read")
