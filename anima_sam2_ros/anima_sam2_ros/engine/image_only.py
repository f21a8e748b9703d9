"""Image-only weights: transformers ``Sam2Model`` checkpoints and the model card's artifact.

An image-only checkpoint has the image encoder, prompt encoder and mask decoder but none of the
memory modules (memory attention, memory encoder, object pointers): it segments single images
exactly like the video checkpoint's image path, and it cannot track. It is loaded into a
``Sam2Model`` (never into a video network with random memory modules), and the ``LoadedModel``
says it cannot track, so ``Tracker`` refuses it with ``TRACKING_REFUSAL``.

The model card's artifact (robotflowlabs/sam2.1-hiera-small-int8) is a directory with
``model.safetensors`` (an image-only ``Sam2Model`` in FP32, no ``config.json``: the model name
gives the architecture) and optionally ``model_int8.pt``: a torchao INT8 state dict written by
``torch.save``. That file is read only with ``torch.load(weights_only=True)``; it loads where the
installed torchao registers its tensor types for that (torchao's ``Int8Tensor`` does), else the
FP32 file is used and a WARNING says why.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from .errors import ModelLoadError
from .registry import ModelSpec, build_config

LOG = logging.getLogger("anima_sam2_ros.engine")

CARD_FP32_FILE = "model.safetensors"
CARD_INT8_FILE = "model_int8.pt"
# Tensors of a Sam2VideoModel that an image-only Sam2Model checkpoint does not contain.
MEMORY_PREFIXES = (
    "memory_", "mask_downsample", "object_pointer_proj", "temporal_positional_encoding_projection_layer",
    "no_memory_positional_encoding", "no_object_pointer", "occlusion_spatial_embedding_parameter",
)


def tracking_refusal(spec: ModelSpec, source: str) -> str:
    """Why an image-only model cannot track, and which weights can."""
    size = spec.name.replace("sam2.1-hiera-", "")
    return (f"weights {source} are image-only (a Sam2Model checkpoint such as the model card's "
            f"model.safetensors): they have no memory attention / memory encoder, so they segment but "
            f"cannot track. For tracking use a video checkpoint: facebook/{spec.name} (Hugging Face "
            f"format) or Meta's sam2.1_hiera_{size}.pt")


def is_image_only(missing: list[str]) -> bool:
    """True when the only tensors a checkpoint lacks are the memory modules'."""
    return bool(missing) and all(k.startswith(MEMORY_PREFIXES) for k in missing)


def is_card_dir(path: str) -> bool:
    """A model-card directory: ``model.safetensors`` without a ``config.json``."""
    return (os.path.isdir(path) and os.path.isfile(os.path.join(path, CARD_FP32_FILE))
            and not os.path.isfile(os.path.join(path, "config.json")))


def build_image_model(spec: ModelSpec, seed: int) -> Any:
    """A transformers ``Sam2Model`` of ``spec``'s architecture (the video config's image parts)."""
    import torch

    from .hf_import import transformers_sam2

    tf = transformers_sam2()
    video = build_config(spec)
    config = tf.Sam2Config(vision_config=video.vision_config,
                           prompt_encoder_config=video.prompt_encoder_config,
                           mask_decoder_config=video.mask_decoder_config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = tf.Sam2Model(config)
    return model.eval()


def load_card_int8(model: Any, path: str, source: str) -> bool:
    """Replace ``model``'s weights with the card's ``model_int8.pt``; False (and a WARNING) if not possible.

    ``model`` is the FP32 image model already loaded from ``model.safetensors``: on any failure it
    is left exactly as it was.
    """
    import torch

    file = os.path.join(path, CARD_INT8_FILE)
    from .torchao_support import import_torchao, quantize_dynamic_int8

    def fall_back(why: str) -> bool:
        LOG.warning("%s: %s not used (%s); running %s in FP32", source, CARD_INT8_FILE, why, CARD_FP32_FILE)
        return False

    if import_torchao() is None:
        return fall_back("torchao is not importable")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - an unregistered torchao type, truncation, foreign pickle
        return fall_back(f"torch.load(weights_only=True) refused it: {type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(state, dict):
        return fall_back("it does not hold a state dict")
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        return fall_back(f"{len(missing)} missing tensors {missing[:2]}, "
                         f"{len(unexpected)} unexpected {unexpected[:2]}")
    plain = [k for k, v in state.items() if k.endswith(".weight") and k in _linear_weights(model)
             and type(v) in (torch.Tensor, torch.nn.Parameter)]
    if plain:
        return fall_back(f"its Linear weights are not torchao INT8 tensors ({plain[0]}, ...)")
    shapes = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if shapes:
        return fall_back(f"tensor shapes differ from {CARD_FP32_FILE}'s architecture ({shapes[:2]})")
    backup = {k: v.detach().clone() for k, v in own.items()}
    try:
        quantize_dynamic_int8(model)
        model.load_state_dict(state, strict=True, assign=True)
    except Exception as exc:  # noqa: BLE001 - another torchao layout than this torchao's
        _restore_fp32(model, backup)
        return fall_back(f"this torchao cannot load it: {type(exc).__name__}: {str(exc)[:200]}")
    return True


def _linear_weights(model: Any) -> set[str]:
    import torch

    return {f"{name}.weight" for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)}


def _restore_fp32(model: Any, backup: dict[str, Any]) -> None:
    """Undo a half-done quantization: plain FP32 parameters again."""
    import torch

    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            mod.weight = torch.nn.Parameter(backup[f"{name}.weight"], requires_grad=False)
    try:
        model.load_state_dict(backup, strict=True)
    except Exception as exc:  # noqa: BLE001  # pragma: no cover - the backup is the model's own
        raise ModelLoadError(f"cannot restore the FP32 weights: {exc}") from None
