"""Model names -> SAM 2.1 architecture (transformers ``Sam2VideoConfig``) and default weights id.

Names: ``sam2.1-hiera-tiny``, ``sam2.1-hiera-small`` (default), ``sam2.1-hiera-base-plus``,
``sam2.1-hiera-large``; each with an ``-int8`` suffix (same architecture, int8 precision); and
``test-micro``, a tiny SAM 2.1-shaped network (same module graph, narrow widths, 128 px input)
that tests and CI use.

The Hiera backbones follow Meta's ``sam2.1_hiera_{t,s,b+,l}.yaml`` (and the configs of the
``facebook/sam2.1-hiera-*`` repositories on the Hugging Face hub):

========== ===== ===== ============= ============ ============== ======== ==========
model      embed heads blocks/stage  global att.  window/stage   pos bkg  neck in
========== ===== ===== ============= ============ ============== ======== ==========
tiny       96    1     1, 2, 7, 2    5, 7, 9      8, 4, 14, 7    7x7      768..96
small      96    1     1, 2, 11, 2   7, 10, 13    8, 4, 14, 7    7x7      768..96
base-plus  112   2     2, 3, 16, 3   12, 16, 20   8, 4, 14, 7    14x14    896..112
large      144   2     2, 6, 36, 4   23, 33, 43   8, 4, 16, 8    7x7      1152..144
========== ===== ===== ============= ============ ============== ======== ==========

Hiera doubles the width and the head count at every stage (``dim_mul = head_mul = 2``), so
``embed_dim_per_stage = embed * [1, 2, 4, 8]`` and ``num_attention_heads_per_stage = heads *
[1, 2, 4, 8]``. Everything after the backbone (FPN neck 256, prompt encoder, mask decoder,
memory attention / encoder, 7 memory slots, 16 object pointers) is the same for all four sizes
and equals transformers' ``Sam2VideoConfig`` defaults.
Uncertain values: none known; base-plus' window spec (8, 4, 14, 7) is Hiera's default, which
Meta's ``sam2.1_hiera_b+.yaml`` does not override (it only sets embed_dim 112 and num_heads 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ModelLoadError

DEFAULT_MODEL = "sam2.1-hiera-small"
INT8_SUFFIX = "-int8"


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one registered model name."""

    name: str  # canonical name, without the "-int8" suffix
    hf_id: str | None  # default Hugging Face id of its weights (None: no published weights)
    image_size: int
    backbone: dict[str, Any]  # Sam2HieraDetConfig fields
    vision: dict[str, Any] = field(default_factory=dict)  # extra Sam2VisionConfig fields
    prompt_encoder: dict[str, Any] = field(default_factory=dict)
    mask_decoder: dict[str, Any] = field(default_factory=dict)
    video: dict[str, Any] = field(default_factory=dict)  # extra Sam2VideoConfig fields


def _hiera(embed: int, heads: int, blocks: list[int], global_blocks: list[int],
           windows: list[int], bkg: list[int]) -> dict[str, Any]:
    return {
        "hidden_size": embed,
        "num_attention_heads": heads,
        "blocks_per_stage": list(blocks),
        "embed_dim_per_stage": [embed * m for m in (1, 2, 4, 8)],
        "num_attention_heads_per_stage": [heads * m for m in (1, 2, 4, 8)],
        "global_attention_blocks": list(global_blocks),
        "window_size_per_stage": list(windows),
        "window_positional_embedding_background_size": list(bkg),
    }


_SPECS: dict[str, ModelSpec] = {}


def _register(spec: ModelSpec) -> None:
    _SPECS[spec.name] = spec


_register(ModelSpec("sam2.1-hiera-tiny", "facebook/sam2.1-hiera-tiny", 1024,
                    _hiera(96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7])))
_register(ModelSpec("sam2.1-hiera-small", "facebook/sam2.1-hiera-small", 1024,
                    _hiera(96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7])))
_register(ModelSpec("sam2.1-hiera-base-plus", "facebook/sam2.1-hiera-base-plus", 1024,
                    _hiera(112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14])))
_register(ModelSpec("sam2.1-hiera-large", "facebook/sam2.1-hiera-large", 1024,
                    _hiera(144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7])))

# test-micro: the same module graph (4 Hiera stages with q-pooling, windowed + global attention,
# FPN with top-down levels, high-res features, prompt encoder, two-way decoder, memory attention
# with RoPE, memory encoder, object pointers) with narrow widths and a 128 px input, so a forward
# pass takes milliseconds. Feature maps: 32x32, 16x16, 8x8 (image_size / 4, / 8, / 16).
# Two widths cannot shrink: transformers hard-codes the memory cross-attention's key/value width
# to 64 (Sam2VideoMemoryAttentionLayer: kv_in_dim=64), so memory_encoder_output_channels is 64;
# the neck is 128 wide so that an object pointer splits into 128 / 64 = 2 memory tokens (SAM 2.1:
# 256 / 64 = 4), exercising the same code path.
_MICRO_HIDDEN = 128
_register(ModelSpec(
    "test-micro", None, 128,
    {
        "hidden_size": 8,
        "num_attention_heads": 1,
        "blocks_per_stage": [1, 1, 2, 1],
        "embed_dim_per_stage": [8, 16, 32, 64],
        "num_attention_heads_per_stage": [1, 1, 2, 2],
        "global_attention_blocks": [3],
        "window_size_per_stage": [8, 4, 4, 2],
        "window_positional_embedding_background_size": [4, 4],
    },
    vision={"fpn_hidden_size": _MICRO_HIDDEN},
    prompt_encoder={"hidden_size": _MICRO_HIDDEN, "mask_input_channels": 8},
    mask_decoder={"hidden_size": _MICRO_HIDDEN, "mlp_dim": 64, "num_attention_heads": 4,
                  "iou_head_hidden_dim": 32},
    video={
        "memory_attention_hidden_size": _MICRO_HIDDEN,
        "memory_attention_num_layers": 2,
        "memory_attention_feed_forward_hidden_size": 64,
        "memory_encoder_hidden_size": _MICRO_HIDDEN,
        "memory_encoder_output_channels": 64,
        "mask_downsampler_embed_dim": _MICRO_HIDDEN,
        "memory_fuser_embed_dim": _MICRO_HIDDEN,
        "memory_fuser_intermediate_dim": 64,
    },
))


def model_names() -> list[str]:
    """All accepted model names, ``-int8`` variants included."""
    names = []
    for name in _SPECS:
        names.append(name)
        names.append(name + INT8_SUFFIX)
    return names


def identify_backbone(signature: tuple[int, int]) -> str | None:
    """The registered model whose Hiera has ``(embed dim, number of blocks)``, or None."""
    for spec in _SPECS.values():
        if (spec.backbone["hidden_size"], sum(spec.backbone["blocks_per_stage"])) == tuple(signature):
            return spec.name
    return None


def resolve(name: str) -> tuple[ModelSpec, bool]:
    """Return ``(spec, int8)`` for a model name; ``int8`` is True for the ``-int8`` suffix.

    Raises:
        ModelLoadError: unknown name.
    """
    if not isinstance(name, str):
        raise ModelLoadError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip()
    int8 = key.endswith(INT8_SUFFIX)
    if int8:
        key = key[: -len(INT8_SUFFIX)]
    spec = _SPECS.get(key)
    if spec is None:
        raise ModelLoadError(
            f"unknown model name {name!r}; known: {', '.join(model_names())}")
    return spec, int8


def _feature_sizes(image_size: int) -> list[list[int]]:
    return [[image_size // s, image_size // s] for s in (4, 8, 16)]


def build_config(spec: ModelSpec):
    """Build the transformers ``Sam2VideoConfig`` of a spec (imports transformers)."""
    from .hf_import import transformers_sam2

    video_config_cls = transformers_sam2().Sam2VideoConfig
    size = spec.image_size
    embed = spec.backbone["embed_dim_per_stage"]
    backbone = dict(spec.backbone)
    backbone.update({"model_type": "sam2_hiera_det_model", "image_size": [size, size]})
    vision = {
        "model_type": "sam2_vision_model",
        "backbone_config": backbone,
        "backbone_channel_list": list(reversed(embed)),
        "backbone_feature_sizes": _feature_sizes(size),
    }
    vision.update(spec.vision)
    prompt = {"image_size": size}
    prompt.update(spec.prompt_encoder)
    decoder = dict(spec.mask_decoder)
    video = {"memory_attention_rope_feat_sizes": [size // 16, size // 16]}
    video.update(spec.video)
    return video_config_cls(
        vision_config=vision,
        prompt_encoder_config=prompt,
        mask_decoder_config=decoder,
        image_size=size,
        **video,
    )


def _get(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key)
    return getattr(cfg, key, None)


def _norm(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return value


def architecture_mismatch(spec: ModelSpec, config: dict[str, Any]) -> str | None:
    """Compare a checkpoint's ``config.json`` (as a dict) with a spec.

    Accepts ``sam2_video`` (video) and ``sam2`` (image) configs. Returns None when the
    architecture-defining fields agree, else a human-readable description of the difference.
    """
    model_type = _get(config, "model_type")
    if model_type not in ("sam2_video", "sam2"):
        return f"model_type is {model_type!r}, expected 'sam2_video' (or 'sam2')"
    vision = _get(config, "vision_config") or {}
    backbone = _get(vision, "backbone_config") or {}
    diffs = []
    for key, want in spec.backbone.items():
        got = _get(backbone, key)
        if got is not None and _norm(got) != _norm(want):
            diffs.append(f"backbone {key}={got} (expected {want})")
    if _get(backbone, "embed_dim_per_stage") is None:
        diffs.append("config has no vision_config.backbone_config.embed_dim_per_stage")
    fpn = _get(vision, "fpn_hidden_size")
    want_fpn = spec.vision.get("fpn_hidden_size", 256)
    if fpn is not None and fpn != want_fpn:
        diffs.append(f"fpn_hidden_size={fpn} (expected {want_fpn})")
    prompt = _get(config, "prompt_encoder_config") or {}
    size = _get(prompt, "image_size")
    if size is not None and _norm(size) != spec.image_size:
        diffs.append(f"image_size={size} (expected {spec.image_size})")
    if diffs:
        return "; ".join(diffs)
    return None
