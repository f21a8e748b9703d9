"""Meta's own SAM 2.1 checkpoints (``sam2.1_hiera_*.pt``) read into the transformers network.

Meta's download page gives ``{"model": state_dict}`` files in the module names of its ``sam2``
package (``SAM2Base``: ``image_encoder.trunk`` = Hiera, ``image_encoder.neck`` = FPN,
``sam_prompt_encoder``, ``sam_mask_decoder``, ``memory_attention``, ``memory_encoder`` and a few
top-level parameters). The mapping below follows the two module trees side by side:

* renamed modules (``trunk`` -> ``backbone``, ``norm1`` -> ``layer_norm1``, ``out_proj`` ->
  ``o_proj``, ``fuser`` -> ``memory_fuser``, ...);
* Meta's ``MLP(layers=[...])`` -> transformers' ``proj_in``, ``layers[...]``, ``proj_out``
  (the depth is read from the checkpoint);
* Meta's ``nn.Sequential`` stacks (mask downscaling, output upscaling, mask downsampler) ->
  transformers' named convolutions and layer norms (activations take no index of their own in
  transformers, so indices are counted, not copied);
* the four ``point_embeddings.i`` of Meta's prompt encoder are the rows of ``point_embed``;
* Meta shares one positional Gaussian matrix between the prompt encoder and the image-wide
  positional encoding; transformers holds two copies of it.

The file is read with ``torch.load(weights_only=True)`` (no arbitrary pickle). Every tensor of the
checkpoint must be used exactly once and every tensor of the network filled, with equal shapes;
a checkpoint of another size is refused with the name of the model it is.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from .errors import ModelLoadError

META_SUFFIXES = (".pt", ".pth")
_TRUNK = "image_encoder.trunk."

# (pattern, replacement) applied in order to a Meta key (after the MLP / Sequential rewrites).
_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
    (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
    (r"^vision_encoder\.backbone\.patch_embed\.proj\.", "vision_encoder.backbone.patch_embed.projection."),
    (r"^sam_prompt_encoder\.", "prompt_encoder."),
    (r"^sam_mask_decoder\.", "mask_decoder."),
    (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
    (r"\.norm(\d)\.", r".layer_norm\1."),
    (r"^memory_attention\.norm\.", "memory_attention.layer_norm."),
    (r"\.out_proj\.", ".o_proj."),
    (r"^memory_encoder\.pix_feat_proj\.", "memory_encoder.feature_projection."),
    (r"^memory_encoder\.o_proj\.", "memory_encoder.projection."),  # after the out_proj rename
    (r"^memory_encoder\.fuser\.", "memory_encoder.memory_fuser."),
    (r"^(memory_encoder\.memory_fuser\.layers\.\d+)\.norm\.", r"\1.layer_norm."),
    (r"\.gamma$", ".scale"),
    (r"\.dwconv\.", ".depthwise_conv."),
    (r"\.pwconv(\d)\.", r".pointwise_conv\1."),
    (r"^maskmem_tpos_enc$", "memory_temporal_positional_encoding"),
    (r"^no_mem_embed$", "no_memory_embedding"),
    (r"^no_mem_pos_enc$", "no_memory_positional_encoding"),
    (r"^no_obj_ptr$", "no_object_pointer"),
    (r"^no_obj_embed_spatial$", "occlusion_spatial_embedding_parameter"),
    (r"^obj_ptr_proj\.", "object_pointer_proj."),
    (r"^obj_ptr_tpos_proj\.", "temporal_positional_encoding_projection_layer."),
)

# Meta ``MLP`` modules: ``<prefix>.layers.<i>.<param>``.
_MLP = re.compile(r"^(?P<prefix>.*(?:\.mlp|_head|hypernetworks_mlps\.\d+|^obj_ptr_proj))\.layers\."
                  r"(?P<i>\d+)\.(?P<param>weight|bias)$")
# Meta ``nn.Sequential`` stacks -> transformers names, by the Sequential's index.
_SEQUENTIAL = {
    "sam_prompt_encoder.mask_downscaling": {0: "mask_embed.conv1", 1: "mask_embed.layer_norm1",
                                            3: "mask_embed.conv2", 4: "mask_embed.layer_norm2",
                                            6: "mask_embed.conv3"},
    "sam_mask_decoder.output_upscaling": {0: "upscale_conv1", 1: "upscale_layer_norm", 3: "upscale_conv2"},
}
_SEQ = re.compile(r"^(?P<prefix>sam_prompt_encoder\.mask_downscaling|sam_mask_decoder\.output_upscaling)"
                  r"\.(?P<i>\d+)\.(?P<param>weight|bias)$")
_DOWNSAMPLER = re.compile(r"^memory_encoder\.mask_downsampler\.encoder\.(?P<i>\d+)\.(?P<param>weight|bias)$")
_POINT = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(?P<i>\d+)\.weight$")
_GAUSSIAN = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_GAUSSIAN_TARGETS = ("prompt_encoder.shared_embedding.positional_embedding",
                     "shared_image_embedding.positional_embedding")


def is_meta_checkpoint_path(path: str) -> bool:
    """True for the file names Meta's checkpoints have (``*.pt`` / ``*.pth``)."""
    return str(path).endswith(META_SUFFIXES)


def read_meta_checkpoint(path: str) -> dict[str, Any]:
    """The state dict of a Meta ``.pt``: ``{"model": state_dict}`` or a bare state dict."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError (foreign objects), EOFError (truncated)...
        raise ModelLoadError(f"cannot read {path} with torch.load(weights_only=True): "
                             f"{type(exc).__name__}: {str(exc)[:300]}") from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state:
        raise ModelLoadError(f"{path} holds no state dict (expected Meta's {{'model': state_dict}})")
    if not any(isinstance(k, str) and k.startswith(_TRUNK) for k in state):
        raise ModelLoadError(
            f"{path} is not a SAM 2 checkpoint in Meta's layout (no '{_TRUNK}*' tensors; "
            f"first keys: {[str(k) for k in list(state)[:3]]})")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelLoadError(f"{path}: entries that are not tensors: {bad[:5]}")
    return state


def backbone_signature(state: dict[str, Any]) -> tuple[int, int]:
    """``(embed dim, number of Hiera blocks)`` of a Meta state dict: what tells the sizes apart."""
    embed = state.get(_TRUNK + "patch_embed.proj.weight")
    pattern = re.compile(r"^image_encoder\.trunk\.blocks\.(\d+)\.")
    blocks = {int(m.group(1)) for k in state for m in [pattern.match(k)] if m}
    return (int(embed.shape[0]) if embed is not None else -1, len(blocks))


def _mlp_depths(keys: list[str]) -> dict[str, int]:
    depths: dict[str, int] = {}
    for key in keys:
        m = _MLP.match(key)
        if m:
            depths[m["prefix"]] = max(depths.get(m["prefix"], 0), int(m["i"]) + 1)
    return depths


def _downsampler_layers(keys: list[str]) -> tuple[dict[int, str], int]:
    """Meta's mask downsampler: (conv, LayerNorm2d, GELU) per stride step, then a 1x1 conv."""
    indices = sorted({int(m["i"]) for k in keys for m in [_DOWNSAMPLER.match(k)] if m})
    if not indices:
        return {}, -1
    final = indices[-1]
    names = {final: "memory_encoder.mask_downsampler.final_conv"}
    for step, i in enumerate(i for i in indices if i != final and i % 3 == 0):
        names[i] = f"memory_encoder.mask_downsampler.layers.{step}.conv"
        names[i + 1] = f"memory_encoder.mask_downsampler.layers.{step}.layer_norm"
    return names, final


def meta_to_transformers_key(key: str, depths: dict[str, int], downsampler: dict[int, str]) -> str | None:
    """The transformers name of one Meta tensor (None: not a tensor this mapping knows)."""
    m = _MLP.match(key)
    if m:
        depth, i = depths[m["prefix"]], int(m["i"])
        layer = "proj_in" if i == 0 else "proj_out" if i == depth - 1 else f"layers.{i - 1}"
        key = f"{m['prefix']}.{layer}.{m['param']}"
    m = _SEQ.match(key)
    if m:
        name = _SEQUENTIAL[m["prefix"]].get(int(m["i"]))
        if name is None:
            return None
        key = f"{m['prefix'].split('.')[0]}.{name}.{m['param']}"
    m = _DOWNSAMPLER.match(key)
    if m:
        name = downsampler.get(int(m["i"]))
        return None if name is None else f"{name}.{m['param']}"
    for pattern, repl in _RENAMES:
        key = re.sub(pattern, repl, key)
    return key


def convert_meta_state(state: dict[str, Any], target: dict[str, Any], source: str,
                       identify: Callable[[tuple[int, int]], str | None], expected: str) -> dict[str, Any]:
    """Meta state dict -> the network's state dict (``target``: its own, for names and shapes).

    ``identify`` names the registered model of a backbone signature, for the refusal message.
    """
    import torch

    mine = backbone_signature(state)
    theirs = backbone_signature(_transformers_as_meta_signature(target))
    if mine != theirs:
        actual = identify(mine)
        what = f"a {actual} checkpoint" if actual else f"a checkpoint of an unknown size {mine}"
        hint = f"; load it as model {actual!r}" if actual else ""
        raise ModelLoadError(f"{source} is {what} (Hiera embed {mine[0]}, {mine[1]} blocks), "
                             f"not {expected} (embed {theirs[0]}, {theirs[1]} blocks){hint}")
    keys = list(state)
    depths = _mlp_depths(keys)
    downsampler, _ = _downsampler_layers(keys)
    out: dict[str, Any] = {}
    used: dict[str, str] = {}
    unknown: list[str] = []
    points: dict[int, Any] = {}

    def put(name: str, value: Any, src: str) -> None:
        if name in used:
            raise ModelLoadError(f"{source}: {src} and {used[name]} both map to {name}")
        used[name] = src
        out[name] = value

    for key in keys:
        value = state[key]
        if key == _GAUSSIAN:
            for name in _GAUSSIAN_TARGETS:
                put(name, value, key)
            continue
        m = _POINT.match(key)
        if m:
            points[int(m["i"])] = value
            continue
        name = meta_to_transformers_key(key, depths, downsampler)
        if name is None or name not in target:
            unknown.append(key)
            continue
        put(name, value, key)
    if points:
        if sorted(points) != list(range(len(points))):
            raise ModelLoadError(f"{source}: point embeddings {sorted(points)} are not 0..n-1")
        put("prompt_encoder.point_embed.weight", torch.cat([points[i] for i in sorted(points)], 0),
            "sam_prompt_encoder.point_embeddings.*")
    missing = [k for k in target if k not in out]
    if unknown or missing:
        hint = ""
        sam21_only = ("occlusion_spatial", "temporal_positional_encoding_projection")
        if any(k.startswith(sam21_only) for k in missing):
            hint = " (a SAM 2.0 checkpoint? this package runs SAM 2.1: use sam2.1_hiera_*.pt)"
        raise ModelLoadError(
            f"{source} does not match {expected}{hint}: {len(unknown)} checkpoint tensors without a "
            f"place {unknown[:3]}, {len(missing)} network tensors not in the checkpoint {missing[:3]}")
    shapes = [f"{used[k]} {tuple(v.shape)} -> {k} {tuple(target[k].shape)}"
              for k, v in out.items() if tuple(v.shape) != tuple(target[k].shape)]
    if shapes:
        raise ModelLoadError(f"{source}: tensor shapes do not match {expected}: {shapes[:3]}")
    return out


def _transformers_as_meta_signature(target: dict[str, Any]) -> dict[str, Any]:
    """The network's own state dict with its backbone keys spelled as Meta's (for the signature)."""
    sig: dict[str, Any] = {}
    emb = target.get("vision_encoder.backbone.patch_embed.projection.weight")
    if emb is not None:
        sig[_TRUNK + "patch_embed.proj.weight"] = emb
    for key in target:
        m = re.match(r"^vision_encoder\.backbone\.blocks\.(\d+)\.", key)
        if m:
            sig[f"{_TRUNK}blocks.{m.group(1)}.x"] = None
    return sig
