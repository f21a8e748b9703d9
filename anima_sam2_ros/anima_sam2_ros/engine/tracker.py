"""``Tracker``: streaming multi-object SAM 2.1 tracker with bounded memory.

One ``step(image, prompts)`` per camera frame. Objects prompted in that call are added (new id)
or re-prompted (known id) and conditioned on the frame; every other tracked object is propagated
with its memory bank. One image-encoder pass per frame, objects batched.

Design: own state store, the model's own submodules
---------------------------------------------------
transformers' ``Sam2VideoInferenceSession`` keeps every frame's pixels and every per-object
output forever, derives the next frame index from the number of stored frames, and its
``Sam2VideoModel.forward`` loops over objects one at a time (batch 1). Pruning the session from
outside would fight that bookkeeping (frame indices, ``frames_tracked_per_obj``,
``obj_with_new_inputs`` replaced by every ``add_inputs`` call). This module therefore keeps its
own small per-object store and calls the network's submodules directly, reproducing the
reference computation step by step (``_prepare_memory_conditioned_features``,
``_get_object_pointers``/``_process_object_pointers``, ``_single_frame_forward``,
``_encode_new_memory``) with explicit frame indices:

* per object: ``cond`` (conditioning frames: memory features + object pointer) and ``recent``
  (non-conditioning frames: memory features while within ``num_maskmem - 1`` frames of the next
  one, object pointer while within ``max_object_pointers - 1`` frames). After every step
  everything the next frame's memory attention cannot read is dropped; the conditioning frames
  are capped at ``max_conditioning_frames`` (the first and the most recent; an evicted
  conditioning frame is demoted to an ordinary recent frame, as SAM 2 treats unselected
  conditioning frames, and ages out). Memory features are stored in bfloat16 as the reference
  does; the spatial memory positional encoding (the same for every frame) is stored once.
  Nothing per frame is cached beyond the current frame (no pixels, no vision features).
* temporal positions are computed exactly as the reference: memory offsets from explicit frame
  indices (``memory_temporal_positional_encoding[offset - 1]``, index -1 for conditioning
  frames), object pointer offsets normalised by ``max_object_pointers - 1`` (15, as a
  transformers streaming session does). So pruning never changes an output, and the outputs
  equal transformers' streaming session while the conditioning cap is not exceeded (tests).

Batching
--------
One vision-encoder pass per frame. Then per frame:

* memory attention for all propagated objects, batched over objects whose memory has the same
  *structure* (number of memory frames and of object-pointer tokens). The memory-attention
  layers take no padding mask and exclude a single, batch-wide number of pointer tokens from
  RoPE, so objects with different structures cannot share a call without changing the result;
  their positional encodings may differ (each object gets its own temporal offsets). In steady
  state (objects tracked for >= ``max_object_pointers`` frames with the same number of
  conditioning frames) all objects share one call.
* mask decoder: one call for all propagated objects; one call per (number of prompt points,
  multimask) group for newly prompted objects; one call for mask-prompted objects.
* memory encoder: one call for all objects (two when user-prompted and propagated objects are on
  the same frame, see below).

Every batched call takes at most ``object_batch`` objects (default 16 on a GPU, 4 on a CPU): the
memory attention holds ``object_batch`` copies of the ~28k memory tokens, and on a CPU larger
batches only add cache misses (hiera-small, 2 threads, 16 objects per step: 115 s in one batch;
per object 5.0 s at 1, 5.2 s at 4, 6.9 s at 16, with a 4.2 GB peak RSS). Results do not depend
on it.

Semantics (``semantics="sam2"``, default) follow Meta's SAM 2.1 video predictor where
transformers' streaming session differs:

* memory masks are binarised per object (prompted objects only); transformers binarises every
  object's memory mask on a frame where any object got a prompt (``any(is_mask_from_pts)``).
* mask prompts (a mask only) use the mask directly as the output (``_use_mask_as_output``); the
  object pointer comes from the decoder in single-mask mode (Meta: ``_forward_sam_heads``
  default ``multimask_output=False``; transformers uses multimask mode, i.e. another token), and
  the memory is encoded from the low-res logits upsampled to S x S (Meta's
  ``propagate_in_video_preflight``); transformers encodes the S x S mask itself.

``semantics="transformers"`` reproduces transformers 5.x' streaming session bit for bit in those
three places (used by the equivalence tests).

Frames are preprocessed as Meta's video predictor does (``preprocess_video_frame``: bicubic
resize of the uint8 frame exactly as ``PIL.Image.resize``, then /255 and ImageNet mean/std), not
as the image predictor (``Segmenter``): the two differ by a few grey levels, enough to move every
frame's logits by ~0.5.

Other conventions: a re-prompt on a streamed frame conditions the object on that frame without
memory (``is_init_cond_frame``: the frame has not been tracked yet, as in both references); a
prompt gives either a mask or points/box (as in both video predictors); results carry the
predicted IoU of the chosen mask (1.0 for mask prompts), ``sigmoid`` of the object-score logit,
``lost`` after ``lost_after`` consecutive frames with a non-positive logit.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError, ModelLoadError, UnknownObjectError
from .preprocess import preprocess_video_frame, scale_points, to_rgb, upsample_logits
from .types import ObjectResult, Prompt
from .validation import validate_image, validate_prompt

SEMANTICS = ("sam2", "transformers")
_MASK_SCALE, _MASK_BIAS = 20.0, -10.0  # SAM 2 `_use_mask_as_output`
_NO_OBJ_SCORE = -1024.0  # SAM 2 / transformers NO_OBJ_SCORE: low-res logits of an absent object
GPU_OBJECT_BATCH = 16
CPU_OBJECT_BATCH = 4


def _chunks(items: List[int], size: int) -> List[List[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _sine_pe(pos: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Transformers' ``get_1d_sine_pe`` (any leading shape)."""
    pe_dim = dim // 2
    dim_t = torch.arange(pe_dim, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / pe_dim)
    pos_embed = pos.unsqueeze(-1) / dim_t
    return torch.cat([pos_embed.sin(), pos_embed.cos()], dim=-1)


class _Frame:
    """What memory attention reads of one past frame of one object."""

    __slots__ = ("maskmem", "pointer")

    def __init__(self, maskmem: Optional[torch.Tensor], pointer: Optional[torch.Tensor]) -> None:
        self.maskmem = maskmem  # (HW, mem_dim) bfloat16, or None once out of the memory window
        self.pointer = pointer  # (hidden,) or None once out of the pointer window

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.maskmem, self.pointer) if t is not None)


class _Object:
    __slots__ = ("object_id", "cond", "recent", "lost_frames", "lost")

    def __init__(self, object_id: int) -> None:
        self.object_id = object_id
        self.cond: Dict[int, _Frame] = {}  # conditioning frames, ascending frame index
        self.recent: Dict[int, _Frame] = {}  # non-conditioning frames
        self.lost_frames = 0
        self.lost = False


class _Request:
    """A validated prompt turned into model-space tensors (host side, before the forward)."""

    __slots__ = ("object_id", "points", "labels", "mask", "new")

    def __init__(self, object_id: int, points: Optional[np.ndarray], labels: Optional[np.ndarray],
                 mask: Optional[np.ndarray], new: bool) -> None:
        self.object_id = object_id
        self.points = points  # (N, 2) float32 model pixels (box corners first), or None
        self.labels = labels  # (N,) int32 (2, 3 for box corners)
        self.mask = mask  # (H, W) bool source mask, or None
        self.new = new


class _Job:
    """One frame between ``Tracker.prepare`` and ``Tracker.finish``."""

    __slots__ = ("rgb", "requests")

    def __init__(self, rgb: np.ndarray, requests: List[_Request]) -> None:
        self.rgb = rgb
        self.requests = requests


class Tracker:
    """Streaming multi-object tracker on a loaded SAM 2.1 video model (see module docstring)."""

    def __init__(self, model: Any, num_maskmem: int = 7, max_conditioning_frames: int = 2,
                 lost_after: int = 10, max_object_pointers: int = 16, *, semantics: str = "sam2",
                 mask_threshold: float = 0.0, object_batch: Optional[int] = None,
                 encoder: Any = None) -> None:
        """Wrap a ``LoadedModel`` (``model``, ``device``, ``dtype``, ``image_size``, ``autocast()``).

        Args:
            num_maskmem: memory slots (1 + recent frames), at most the model's (7).
            max_conditioning_frames: conditioning frames kept per object (first + most recent);
                with 1 only the most recent is kept.
            lost_after: consecutive frames without presence after which an object is ``lost``.
            max_object_pointers: object pointers span (the current frame's ``max_object_pointers
                - 1`` predecessors plus the conditioning frames); 16 in SAM 2.1.
            semantics: ``"sam2"`` (Meta's video predictor) or ``"transformers"`` (transformers'
                streaming session, bit for bit; for equivalence tests).
            encoder: a ``shared_encoder.SharedEncoder`` of the same model: ``step`` encodes its
                frame in a pass shared with other cameras' trackers (None: its own pass).
            mask_threshold: mask-logit threshold of the returned masks (0 = SAM's own). The
                memory is encoded from the logits as in SAM 2, whatever the threshold.
            object_batch: objects per batched network call (default ``CPU_OBJECT_BATCH`` on a
                CPU, ``GPU_OBJECT_BATCH`` otherwise); bounds transient memory, not results.

        Raises:
            InvalidInputError: a parameter out of range.
            ModelLoadError: a network whose memory widths cannot run memory attention.
        """
        net = getattr(model, "model", None)
        if net is None:
            raise InvalidInputError("Tracker needs a loaded model (LoadedModel with a network)")
        if not getattr(model, "can_track", True):
            raise ModelLoadError(str(getattr(model, "tracking_refusal", "these weights cannot track")))
        self.mask_threshold = float(mask_threshold)
        if not math.isfinite(self.mask_threshold):
            raise InvalidInputError(f"mask_threshold must be finite, got {mask_threshold!r}")
        cfg = net.config
        if object_batch is None:
            on_cpu = torch.device(getattr(model, "device", "cpu")).type == "cpu"
            object_batch = CPU_OBJECT_BATCH if on_cpu else GPU_OBJECT_BATCH
        params = {"num_maskmem": num_maskmem, "max_conditioning_frames": max_conditioning_frames,
                  "lost_after": lost_after, "max_object_pointers": max_object_pointers,
                  "object_batch": object_batch}
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
        if num_maskmem > cfg.num_maskmem:
            raise InvalidInputError(
                f"num_maskmem {num_maskmem} exceeds the model's {cfg.num_maskmem} memory slots")
        kv_width = net.memory_attention.layers[0].cross_attn_image.k_proj.in_features
        if net.mem_dim != kv_width or net.mem_dim > net.hidden_dim or net.hidden_dim % net.mem_dim:
            raise ModelLoadError(
                f"model cannot track: memory width {net.mem_dim} must equal the memory attention's "
                f"key/value width {kv_width} (transformers hard-codes 64) and divide the hidden width "
                f"{net.hidden_dim}")
        if semantics not in SEMANTICS:
            raise InvalidInputError(f"semantics must be one of {SEMANTICS}, got {semantics!r}")
        self._loaded = model
        self._net = net
        self._cfg = cfg
        self.num_maskmem = int(num_maskmem)
        self.max_conditioning_frames = int(max_conditioning_frames)
        self.lost_after = int(lost_after)
        self.max_object_pointers = int(max_object_pointers)
        self.object_batch = int(object_batch)
        if encoder is not None and getattr(encoder, "_loaded", None) is not model:
            raise InvalidInputError("the shared encoder must wrap this tracker's loaded model")
        self._encoder = encoder
        self.semantics = semantics
        self._image_size = int(model.image_size)
        self._device = torch.device(model.device)
        self._mem_dtype = getattr(model, "dtype", torch.float32)
        self._objects: Dict[int, _Object] = {}
        self._frame_index = 0
        self._max_id = 0
        self._maskmem_pos: Optional[torch.Tensor] = None  # (HW, mem_dim), shared by all frames
        self._image_pe: Optional[torch.Tensor] = None  # constant dense positional encoding of the decoder
        self.last_low_res_logits: Optional[torch.Tensor] = None  # (N, S/4, S/4) of the last step
        self.last_object_score_logits: Optional[torch.Tensor] = None  # (N,) of the last step

    # ------------------------------------------------------------------ public API
    @property
    def object_ids(self) -> List[int]:
        """Ids of the tracked objects, in the order they were added."""
        return list(self._objects)

    @property
    def frame_index(self) -> int:
        """Number of frames processed so far (the index the next frame gets)."""
        return self._frame_index

    def reset(self) -> None:
        """Forget every object and the frame counter."""
        self._objects.clear()
        self._frame_index = 0
        self._max_id = 0
        self._maskmem_pos = None

    def remove_object(self, object_id: int) -> None:
        """Stop tracking ``object_id``; ``UnknownObjectError`` if it is not tracked."""
        if object_id not in self._objects:
            raise UnknownObjectError(f"object {object_id!r} is not tracked (tracked: {self.object_ids})")
        del self._objects[object_id]
        if not self._objects:
            self._maskmem_pos = None

    def state_nbytes(self) -> int:
        """Bytes of retained tracking state.

        Per-object memory features and object pointers, plus the shared spatial memory positional
        encoding.
        """
        total = 0
        for obj in self._objects.values():
            for fr in list(obj.cond.values()) + list(obj.recent.values()):
                total += fr.nbytes()
        if self._maskmem_pos is not None:
            total += self._maskmem_pos.numel() * self._maskmem_pos.element_size()
        return total

    def retained_frames(self, object_id: int) -> Dict[str, List[int]]:
        """Frame indices held for one object (tests and diagnostics).

        ``cond``: conditioning frames; ``memory``: recent frames whose memory features are held;
        ``pointers``: recent frames whose object pointers are held.
        """
        if object_id not in self._objects:
            raise UnknownObjectError(f"object {object_id!r} is not tracked (tracked: {self.object_ids})")
        obj = self._objects[object_id]
        return {
            "cond": list(obj.cond),
            "memory": sorted(t for t, f in obj.recent.items() if f.maskmem is not None),
            "pointers": sorted(t for t, f in obj.recent.items() if f.pointer is not None),
        }

    def step(self, image: np.ndarray, prompts: Optional[Sequence[Prompt]] = None,
             encoding: str = "rgb8") -> List[ObjectResult]:
        """Process one camera frame; return one ``ObjectResult`` per tracked object.

        Raises:
            InvalidInputError: bad image, encoding or prompt (nothing is changed then).
        """
        job = self.prepare(image, prompts, encoding)
        if job is None:
            return []
        try:
            if self._encoder is not None:
                vision, index = self._encoder.encode(self.pixels(job))
            else:
                with self._loaded.autocast():
                    vision, index = self._net.get_image_features(self.pixels(job), return_dict=True), 0
        except BaseException:
            self.abandon(job)
            raise
        return self.finish(job, vision, index)

    # ------------------------------------------------------------------ step in three parts
    # ``prepare`` (validate, commit new objects) -> the image encoder (here, or batched over
    # several trackers by ``multi_camera.step_cameras``) -> ``finish`` (memory, decoder, results).
    def prepare(self, image: np.ndarray, prompts: Optional[Sequence[Prompt]] = None,
                encoding: str = "rgb8") -> Optional[_Job]:
        """Validate a frame and its prompts; None when there is nothing to run (no objects).

        Raises:
            InvalidInputError: bad image, encoding or prompt (nothing is changed then).
        """
        rgb = to_rgb(validate_image(image), encoding)
        requests = self._parse_prompts(prompts, rgb.shape[:2])
        if not self._objects and not requests:
            self._frame_index += 1
            return None
        # Commit the new objects only after every prompt has been validated.
        for req in requests:
            if req.new:
                self._objects[req.object_id] = _Object(req.object_id)
                self._max_id = max(self._max_id, req.object_id)
        return _Job(rgb, requests)

    def pixels(self, job: _Job) -> torch.Tensor:
        """The frame as the image encoder takes it: ``(1, 3, S, S)`` (Meta's video preprocessing)."""
        return preprocess_video_frame(job.rgb, self._image_size, self._device)

    def abandon(self, job: _Job) -> None:
        """Undo ``prepare`` after a failure (e.g. out of device memory): drop the objects it added."""
        for req in job.requests:
            if req.new:
                self._objects.pop(req.object_id, None)

    def finish(self, job: _Job, vision: Any, index: int) -> List[ObjectResult]:
        """Run the frame on its image features (``vision``: batch element ``index``); the results."""
        frame_idx = self._frame_index
        try:
            with self._loaded.autocast():
                packed, n_obj, stats_cols = self._forward(job.rgb, job.requests, frame_idx, vision, index)
        except BaseException:
            self.abandon(job)
            raise
        self._frame_index += 1
        return self._results(packed, n_obj, stats_cols, job.rgb.shape[:2], job.requests)

    # ------------------------------------------------------------------ prompts
    def _parse_prompts(self, prompts: Optional[Sequence[Prompt]], hw: Tuple[int, int]) -> List[_Request]:
        if prompts is None:
            return []
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        try:
            prompts = list(prompts)
        except TypeError:
            raise InvalidInputError("prompts must be a sequence of Prompt") from None
        requests: List[_Request] = []
        seen = set()
        next_id = self._max_id
        for raw in prompts:
            p = validate_prompt(raw, hw)
            if p.mask_logits is not None:
                raise InvalidInputError(
                    f"prompt (object {p.object_id}): mask_logits refine a Segmenter prediction; the "
                    f"tracker takes a binary mask (Meta's video predictor: add_new_mask)")
            if p.mask is not None and (p.points is not None or p.box is not None):
                raise InvalidInputError(
                    f"prompt (object {p.object_id}): the tracker takes either a mask or points/box, not both")
            oid = p.object_id
            if oid == 0:
                next_id += 1
                while next_id in self._objects or next_id in seen:
                    next_id += 1
                oid = next_id
            elif oid in seen:
                raise InvalidInputError(f"object {oid} is prompted twice in one step")
            seen.add(oid)
            next_id = max(next_id, oid)
            points = labels = None
            if p.points is not None or p.box is not None:
                pts, lbl = [], []
                if p.box is not None:
                    pts.append(scale_points(p.box.reshape(2, 2), hw, self._image_size))
                    lbl.append(np.array([2, 3], dtype=np.int32))
                if p.points is not None:
                    pts.append(scale_points(p.points, hw, self._image_size))
                    lbl.append(p.labels.astype(np.int32))
                points = np.concatenate(pts, axis=0).astype(np.float32)
                labels = np.concatenate(lbl, axis=0).astype(np.int32)
            requests.append(_Request(oid, points, labels, p.mask, new=oid not in self._objects))
        return requests

    # ------------------------------------------------------------------ network
    def _decode(self, pix: torch.Tensor, high_res: List[torch.Tensor], points: Optional[torch.Tensor],
                labels: Optional[torch.Tensor], multimask: bool, input_masks: Optional[torch.Tensor] = None):
        """SAM heads on a batch of (memory-conditioned) features ``pix`` (B, C, h, w).

        The reference's ``_single_frame_forward`` (given image embeddings), written for B > 1: its
        best-mask selection indexes ``[arange(B), arange(1), argmax (B, 1)]``, which broadcasts to
        (B, B) for B > 1. Only the chosen mask is upsampled to S x S (bilinear is per channel, so
        this equals upsampling all and choosing).
        """
        net = self._net
        batch = pix.shape[0]
        dev = pix.device
        if self._image_pe is None:
            self._image_pe = net.get_image_wide_positional_embeddings()
        if points is None:
            points = torch.zeros(batch, 1, 1, 2, dtype=pix.dtype, device=dev)
            labels = -torch.ones(batch, 1, 1, dtype=torch.int32, device=dev)
        mask_size = tuple(net.prompt_encoder.mask_input_size)
        if input_masks is not None and tuple(input_masks.shape[-2:]) != mask_size:
            input_masks = F.interpolate(input_masks.float(), size=mask_size, align_corners=False,
                                        mode="bilinear", antialias=True).to(input_masks.dtype)
        sparse, dense = net.prompt_encoder(input_points=points, input_labels=labels, input_boxes=None,
                                           input_masks=input_masks)
        low_multi, iou, tokens, obj_logits = net.mask_decoder(
            image_embeddings=pix,
            image_positional_embeddings=self._image_pe.repeat(batch, 1, 1, 1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            high_resolution_features=[h.expand(batch, -1, -1, -1) for h in high_res],
        )  # (B, 1, K, h, w), (B, 1, K), (B, 1, K, C), (B, 1, 1)
        appearing = obj_logits > 0
        low_multi = torch.where(appearing[:, None, None], low_multi, _NO_OBJ_SCORE)
        if multimask:
            rows = torch.arange(batch, device=dev)
            best = torch.argmax(iou, dim=-1)[:, 0]  # (B,)
            low = low_multi[rows, 0, best][:, None]  # (B, 1, h, w)
            score = iou[rows, 0, best]
            token = tokens[rows, 0, best] if tokens.size(2) > 1 else tokens[:, 0, 0]
        else:
            low = low_multi[:, :, 0]
            score = iou[:, 0, 0]
            token = tokens[:, 0, 0]
        size = self._image_size
        high = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False)
        high = high.to(low.dtype)
        ptr = net.object_pointer_proj(token)  # (B, C)
        lam = appearing[:, 0].to(ptr.dtype)  # (B, 1)
        ptr = lam * ptr + (1 - lam) * net.no_object_pointer
        return low, high, score, obj_logits, ptr

    def _multimask(self, n_points: int, tracking: bool) -> bool:
        cfg = self._cfg
        return bool(cfg.multimask_output_in_sam and (not tracking or cfg.multimask_output_for_tracking)
                    and cfg.multimask_min_pt_num <= n_points <= cfg.multimask_max_pt_num)

    def _memory_inputs(self, obj: _Object, frame_idx: int):
        """Memory tokens, positional encodings and pointer offsets of one object for ``frame_idx``.

        (The reference's ``_gather_memory_frame_outputs`` + ``_get_object_pointers``).
        """
        net = self._net
        cond = obj.cond
        unselected: Dict[int, _Frame] = {}
        max_cond = self._cfg.max_cond_frame_num
        if max_cond != -1 and len(cond) > max_cond:
            selected, unselected = net._select_closest_cond_frames(frame_idx, cond, max_cond)
        else:
            selected = cond
        tpos = net.memory_temporal_positional_encoding  # (num_maskmem, 1, 1, mem_dim)
        mems, offsets = [], []
        for fr in selected.values():
            mems.append(fr.maskmem)
            offsets.append(0)
        for off in range(self.num_maskmem - 1, 0, -1):
            fr = obj.recent.get(frame_idx - off, unselected.get(frame_idx - off))
            if fr is not None and fr.maskmem is not None:
                mems.append(fr.maskmem)
                offsets.append(off)
        ptrs, ptr_offsets = [], []
        for t, fr in cond.items():
            if t <= frame_idx:
                ptrs.append(fr.pointer)
                ptr_offsets.append(frame_idx - t)
        for off in range(1, self.max_object_pointers):
            t = frame_idx - off
            if t < 0:
                break
            fr = obj.recent.get(t)
            if fr is not None and fr.pointer is not None:
                ptrs.append(fr.pointer)
                ptr_offsets.append(off)
        pos = self._maskmem_pos
        mem_pos = [pos + tpos[o - 1].reshape(1, -1) for o in offsets]
        return mems, mem_pos, ptrs, ptr_offsets

    def _condition_on_memory(self, objs: List[_Object], frame_idx: int, top: torch.Tensor,
                             top_pos: torch.Tensor) -> torch.Tensor:
        """Memory attention for propagated objects, batched by memory structure.

        Returns the conditioned features (len(objs), C, h, w) in ``objs`` order.
        """
        net = self._net
        hidden = net.hidden_dim
        mem_dim = net.mem_dim
        fh, fw = net.backbone_feature_sizes[-1]
        gathered = [self._memory_inputs(o, frame_idx) for o in objs]
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, (mems, _, ptrs, _) in enumerate(gathered):
            groups.setdefault((len(mems), len(ptrs)), []).append(i)
        out: List[Optional[torch.Tensor]] = [None] * len(objs)
        chunked = [(n_ptr, chunk) for (_n_mem, n_ptr), members in groups.items()
                   for chunk in _chunks(members, self.object_batch)]
        for n_ptr, members in chunked:
            batch = len(members)
            # bf16 memory features -> the activation dtype first (exact for fp32, as the reference's
            # final cast; under fp16 autocast, cat/stack would refuse a bf16 + fp16 mix)
            memory = torch.stack([torch.cat([m.to(self._mem_dtype) for m in gathered[i][0]], dim=0)
                                  for i in members], dim=1)
            memory_pos = torch.stack([torch.cat(gathered[i][1], dim=0) for i in members], dim=1)
            n_ptr_tokens = 0
            if n_ptr:
                # (P, B, C)
                pointers = torch.stack([torch.stack(gathered[i][2], dim=0) for i in members], dim=1)
                if self._cfg.enable_temporal_pos_encoding_for_object_pointers:
                    offs = torch.tensor([gathered[i][3] for i in members], dtype=torch.float32,
                                        device=pointers.device).t()  # (P, B)
                    sine = _sine_pe(offs / float(self.max_object_pointers - 1), hidden).to(pointers.dtype)
                    ptr_pos = net.temporal_positional_encoding_projection_layer(sine)  # (P, B, mem_dim)
                else:
                    ptr_pos = pointers.new_zeros(n_ptr, batch, mem_dim)
                if mem_dim < hidden:
                    splits = hidden // mem_dim
                    pointers = pointers.reshape(-1, batch, splits, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                    ptr_pos = ptr_pos.repeat_interleave(splits, dim=0)
                memory = torch.cat([memory.to(pointers.dtype), pointers], dim=0)
                memory_pos = torch.cat([memory_pos, ptr_pos], dim=0)
                n_ptr_tokens = pointers.shape[0]
            memory = memory.to(self._mem_dtype)
            conditioned = net.memory_attention(
                current_vision_features=top.expand(-1, batch, -1),
                current_vision_position_embeddings=top_pos.expand(-1, batch, -1),
                memory=memory,
                memory_posision_embeddings=memory_pos,
                num_object_pointer_tokens=n_ptr_tokens,
            )  # (1, B, HW, C)
            conditioned = conditioned[0].transpose(1, 2).reshape(batch, hidden, fh, fw)
            for j, i in enumerate(members):
                out[i] = conditioned[j:j + 1]
        return torch.cat(out, dim=0)  # type: ignore[arg-type]

    def _forward(self, rgb: np.ndarray, requests: List[_Request], frame_idx: int, vision: Any, index: int):
        net = self._net
        dev = self._device
        hidden = net.hidden_dim
        fh, fw = net.backbone_feature_sizes[-1]
        # (HW_l, B, C_l) for a batch of B frames (several cameras): this frame's element.
        feats = [x[:, index:index + 1] for x in vision.fpn_hidden_states]
        top, top_pos = feats[-1], vision.fpn_position_encoding[-1][:, index:index + 1]
        high_res = [x.permute(1, 2, 0).view(x.size(1), x.size(2), *s)
                    for x, s in zip(feats[:-1], net.backbone_feature_sizes[:-1], strict=True)]

        by_id = {r.object_id: r for r in requests}
        order = list(self._objects)
        n_obj = len(order)
        low_res: List[Optional[torch.Tensor]] = [None] * n_obj  # (1, 1, h, w)
        mem_masks: List[Optional[torch.Tensor]] = [None] * n_obj  # (1, 1, S, S) for the memory encoder
        ious: List[Optional[torch.Tensor]] = [None] * n_obj  # (1,)
        logits: List[Optional[torch.Tensor]] = [None] * n_obj  # (1, 1, 1)
        pointers: List[Optional[torch.Tensor]] = [None] * n_obj  # (1, C)
        prompted = [oid in by_id for oid in order]

        def collect(indices: List[int], out) -> None:
            low, high, score, obj_logits, ptr = out
            for j, i in enumerate(indices):
                low_res[i] = low[j:j + 1]
                mem_masks[i] = high[j:j + 1]
                ious[i] = score[j:j + 1]
                logits[i] = obj_logits[j:j + 1]
                pointers[i] = ptr[j:j + 1]

        # 1) propagated objects: memory attention (batched by structure) + one decoder call
        tracked = [i for i in range(n_obj) if not prompted[i]]
        for chunk in _chunks(tracked, self.object_batch):
            objs = [self._objects[order[i]] for i in chunk]
            pix = self._condition_on_memory(objs, frame_idx, top, top_pos)
            out = self._decode(pix, high_res, None, None, self._multimask(0, tracking=True))
            collect(chunk, out)

        # 2) point/box prompts: no memory (initial conditioning frame), grouped by prompt shape
        point_groups: Dict[Tuple[int, bool], List[int]] = {}
        for i in range(n_obj):
            req = by_id.get(order[i])
            if req is not None and req.points is not None:
                n = int(req.points.shape[0])
                point_groups.setdefault((n, self._multimask(n, tracking=False)), []).append(i)
        if point_groups:
            no_mem = (top + net.no_memory_embedding).permute(1, 2, 0).view(1, hidden, fh, fw)
            chunks = [(multimask, chunk) for (_n, multimask), members in point_groups.items()
                      for chunk in _chunks(members, self.object_batch)]
            for multimask, members in chunks:
                pts = torch.from_numpy(np.stack([by_id[order[i]].points for i in members]))[:, None].to(dev)
                lbl = torch.from_numpy(np.stack([by_id[order[i]].labels for i in members]))[:, None].to(dev)
                out = self._decode(no_mem.expand(len(members), -1, -1, -1), high_res, pts, lbl, multimask)
                collect(members, out)

        # 3) mask prompts: the mask is the output (SAM 2 `_use_mask_as_output`)
        mask_members = [i for i in range(n_obj) if prompted[i] and by_id[order[i]].mask is not None]
        if mask_members:
            self._mask_as_output(mask_members, [by_id[order[i]].mask for i in mask_members], top, high_res,
                                 low_res, mem_masks, ious, logits, pointers)

        # 4) memory encoder, batched over objects
        self._encode_memories(order, prompted, top, mem_masks, logits, pointers, frame_idx)

        # 5) masks at source size + stats, packed into one host transfer
        low = torch.cat(low_res, dim=0)  # type: ignore[arg-type]
        obj_logits = torch.cat(logits).reshape(-1)  # type: ignore[arg-type]
        # The current frame's raw outputs (diagnostics / tests); replaced every step.
        self.last_low_res_logits = low[:, 0].float()
        self.last_object_score_logits = obj_logits.float()
        return self._pack(low, torch.cat(ious), obj_logits, rgb.shape[:2]), n_obj, 6

    def _mask_as_output(self, members, masks, top, high_res,
                        low_res, mem_masks, ious, logits, pointers) -> None:
        net = self._net
        size = self._image_size
        dev = self._device
        hidden = net.hidden_dim
        fh, fw = net.backbone_feature_sizes[-1]
        m = torch.from_numpy(np.stack([np.ascontiguousarray(x, dtype=np.bool_) for x in masks]))
        m = m.to(dev)[:, None].to(torch.float32)  # (B, 1, H, W)
        if tuple(m.shape[-2:]) != (size, size):  # Meta's add_new_mask / transformers' processor
            m = F.interpolate(m, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).to(torch.float32)
        pix = top.permute(1, 2, 0).view(1, hidden, fh, fw)  # raw features (no memory, no no-mem embedding)
        dtype = pix.dtype
        mf = m.to(dtype)
        high = mf * _MASK_SCALE + _MASK_BIAS
        low = F.interpolate(high.float(), size=net.prompt_encoder.mask_input_size, align_corners=False,
                            mode="bilinear", antialias=True).to(dtype)
        batch = len(members)
        ptr = self._decode(pix.expand(batch, -1, -1, -1), high_res, None, None,
                           multimask=self.semantics == "transformers", input_masks=net.mask_downsample(mf))[4]
        appearing = (m.flatten(1) > 0).any(dim=1).to(dtype)[:, None]  # (B, 1)
        ptr = appearing * ptr + (1 - appearing) * net.no_object_pointer
        logit = (_MASK_SCALE * appearing + _MASK_BIAS)[:, :, None]  # (B, 1, 1)
        if self.semantics == "sam2":  # Meta: memory from the low-res logits upsampled to S x S
            mem = F.interpolate(low.float(), size=(size, size), mode="bilinear", align_corners=False)
            mem = mem.to(dtype)
        else:
            mem = high
        for j, i in enumerate(members):
            low_res[i] = low[j:j + 1]
            mem_masks[i] = mem[j:j + 1]
            ious[i] = torch.ones(1, dtype=torch.float32, device=dev)
            logits[i] = logit[j:j + 1]
            pointers[i] = ptr[j:j + 1]

    def _encode_memories(self, order, prompted, top, mem_masks, logits, pointers, frame_idx: int) -> None:
        net = self._net
        n_obj = len(order)
        if self.semantics == "transformers" or all(prompted) or not any(prompted):
            groups = [(list(range(n_obj)), any(prompted))]
        else:  # per-object binarisation (Meta): one call per kind
            groups = [([i for i in range(n_obj) if prompted[i]], True),
                      ([i for i in range(n_obj) if not prompted[i]], False)]
        chunked = [(chunk, from_prompt) for members, from_prompt in groups
                   for chunk in _chunks(members, self.object_batch)]
        for members, from_prompt in chunked:
            maskmem, maskmem_pos = net._encode_new_memory(
                current_vision_feats=top.expand(-1, len(members), -1),
                pred_masks_high_res=torch.cat([mem_masks[i] for i in members], dim=0),
                object_score_logits=torch.cat([logits[i] for i in members], dim=0),
                is_mask_from_pts=from_prompt,
            )  # (HW, B, mem_dim) bfloat16, (HW, B, mem_dim)
            if self._maskmem_pos is None:
                self._maskmem_pos = maskmem_pos[:, 0].clone()
            for j, i in enumerate(members):
                obj = self._objects[order[i]]
                frame = _Frame(maskmem[:, j].clone(), pointers[i].reshape(-1).clone())
                if prompted[i]:
                    obj.cond[frame_idx] = frame
                else:
                    obj.recent[frame_idx] = frame
        for oid in order:
            self._prune(self._objects[oid], frame_idx)

    def _prune(self, obj: _Object, frame_idx: int) -> None:
        """Keep only what frame ``frame_idx + 1`` (and later) can read."""
        while len(obj.cond) > self.max_conditioning_frames:
            keys = list(obj.cond)
            victim = keys[1] if self.max_conditioning_frames > 1 else keys[0]
            obj.recent[victim] = obj.cond.pop(victim)  # demoted: ages out like any recent frame
        nxt = frame_idx + 1
        mem_oldest = nxt - (self.num_maskmem - 1)
        ptr_oldest = nxt - (self.max_object_pointers - 1)
        for t in list(obj.recent):
            fr = obj.recent[t]
            if t < mem_oldest:
                fr.maskmem = None
            if t < ptr_oldest:
                fr.pointer = None
            if fr.maskmem is None and fr.pointer is None:
                del obj.recent[t]

    def _pack(self, low: torch.Tensor, iou: torch.Tensor, logit: torch.Tensor, hw) -> torch.Tensor:
        """Source-size masks and per-object stats (score, logit, area, bbox) in one uint8 buffer."""
        height, width = int(hw[0]), int(hw[1])
        masks = upsample_logits(low[:, 0], (height, width)) > self.mask_threshold  # (N, H, W) bool
        area = masks.sum(dim=(1, 2))
        rows = masks.any(dim=2)
        cols = masks.any(dim=1)
        ys = torch.arange(height, device=masks.device)
        xs = torch.arange(width, device=masks.device)
        y0 = torch.where(rows, ys, height).min(dim=1).values
        y1 = torch.where(rows, ys, -1).max(dim=1).values
        x0 = torch.where(cols, xs, width).min(dim=1).values
        x1 = torch.where(cols, xs, -1).max(dim=1).values
        empty = area == 0
        x0 = torch.where(empty, 0, x0)
        y0 = torch.where(empty, 0, y0)
        stats = torch.stack([iou.float(), logit.float(), area.float(), x0.float(), y0.float(),
                             x1.float(), y1.float()], dim=1).contiguous()  # (N, 7) float32
        buf = torch.cat([masks.reshape(-1).view(torch.uint8), stats.reshape(-1).view(torch.uint8)])
        return buf.cpu()

    def _results(self, packed: torch.Tensor, n_obj: int, _cols: int, hw, requests: List[_Request]):
        height, width = hw
        data = packed.numpy()
        n_mask = n_obj * height * width
        masks = data[:n_mask].view(np.bool_).reshape(n_obj, height, width)
        stats = data[n_mask:].view(np.float32).reshape(n_obj, 7)
        by_id = {r.object_id: r for r in requests}
        results = []
        for k, oid in enumerate(self._objects):
            obj = self._objects[oid]
            score, logit, area, x0, y0, x1, y1 = (float(v) for v in stats[k])
            present = logit > 0
            event = ""
            if present:
                if obj.lost:
                    event = "reacquired"
                obj.lost = False
                obj.lost_frames = 0
            else:
                obj.lost_frames += 1
                if not obj.lost and obj.lost_frames >= self.lost_after:
                    obj.lost = True
                    event = "lost"
            req = by_id.get(oid)
            if req is not None:
                event = "added" if req.new else "reprompted"
            results.append(ObjectResult(
                object_id=oid,
                mask=masks[k],
                score=score,
                object_score=0.5 * (1.0 + math.tanh(0.5 * logit)),  # sigmoid, overflow-free
                visible=bool(present and area > 0),
                bbox=(int(x0), int(y0), int(x1), int(y1)),
                area=int(area),
                lost=obj.lost,
                lost_frames=obj.lost_frames,
                event=event,
            ))
        return results
