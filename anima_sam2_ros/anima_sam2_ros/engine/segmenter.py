"""``Segmenter``: SAM 2.1 image predictor with cached embeddings and batched prompts.

Behaviour follows Meta's ``SAM2ImagePredictor``:

* ``set_image`` runs the image encoder once, adds ``no_memory_embedding`` to the lowest-resolution
  feature map (as ``Sam2Model`` does) and caches it with the two high-resolution feature maps.
* A box becomes two corner points with labels 2 and 3, placed before the user points; a prompt
  with points and/or a box gets one "not a point" padding token (label -1) at the end. A
  mask-only prompt gives the decoder zero sparse tokens (transformers' ``Sam2Model`` would pad).
* The prompt encoder and mask decoder run once per group of prompts with the same number of
  sparse tokens (usually all prompts form one group): extra padding tokens would change the
  result, because every token takes part in the decoder's attention.
* Single-mask output uses the decoder's dynamic fallback to the best multimask token when the
  single-mask token is unstable (``dynamic_multimask_via_stability``, as Meta's decoder);
  ``multimask_output=True`` returns the three candidates, the best (by predicted IoU) as ``mask``.
* Masks: low-res logits upsampled bilinear straight to the source size, threshold 0.
  ``last_low_res_logits`` keeps the low-res logits clamped to +-32 (Meta's feedback convention);
  ``segment(..., return_logits=True)`` puts the chosen mask's into ``ObjectResult.low_res_logits``.
* ``Prompt.mask_logits`` is Meta's ``mask_input``: the dense prompt is ``mask_embed`` of those
  logits as given (a binary ``Prompt.mask`` becomes +-10 logits first); with points and/or a box,
  or alone (zero sparse tokens, as a mask-only prompt).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .errors import InvalidInputError
from .loading import LoadedModel, load_model
from .preprocess import (
    mask_logits_to_lowres,
    mask_prompt_to_lowres,
    preprocess_image,
    scale_points,
    to_rgb,
    upsample_logits,
)
from .types import ObjectResult, Prompt
from .validation import validate_image, validate_prompt

LOW_RES_CLAMP = 32.0
# Bounds on transient device memory: prompts per decoder call, and float32 bytes of upsampled
# logits alive at once (masks are thresholded chunk by chunk).
MAX_DECODER_BATCH = 32
# Prompts per decoder call on a CPU. Every prompt carries its own copy of the 64x64x256 image
# embedding through the two-way transformer, so the CPU decoder is bound by compute and memory
# bandwidth, not by per-call latency: 8 prompts in one call took 368 ms against 263 ms in calls of
# two and 302 ms one by one (hiera-small, 2 threads, `bench/engine_bench.py`, 2026-12-01). A GPU
# is latency-bound at these sizes and gains from the whole batch.
CPU_DECODER_BATCH = 2
UPSAMPLE_CHUNK_BYTES = 256 << 20


def prompt_tokens(prompt: Prompt, src_hw: tuple, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sparse prompt of a validated prompt, Meta-style, in model-input pixels.

    Returns ``(coords (T, 2) float32, labels (T,) int64)``: box corners (labels 2, 3) first, then
    the user points, then one padding point (0, 0) with label -1; ``T = 0`` for a mask-only
    prompt.
    """
    coords = []
    labels = []
    if prompt.box is not None:
        coords.append(scale_points(np.asarray(prompt.box, np.float64).reshape(2, 2), src_hw, image_size))
        labels.append(np.array([2, 3], dtype=np.int64))
    if prompt.points is not None:
        coords.append(scale_points(prompt.points, src_hw, image_size))
        labels.append(np.asarray(prompt.labels, dtype=np.int64))
    if not coords:
        return np.zeros((0, 2), np.float32), np.zeros((0,), np.int64)
    coords.append(np.zeros((1, 2), np.float32))
    labels.append(np.array([-1], dtype=np.int64))
    return np.concatenate(coords).astype(np.float32), np.concatenate(labels)


def _mask_stats(masks: torch.Tensor) -> torch.Tensor:
    """``(..., H, W)`` bool -> ``(..., 5)`` int64: area, x_min, y_min, x_max, y_max (-1s when empty)."""
    height, width = masks.shape[-2:]
    area = masks.sum(dim=(-1, -2))
    rows = masks.any(dim=-1)  # (..., H)
    cols = masks.any(dim=-2)  # (..., W)
    ys = torch.arange(height, device=masks.device)
    xs = torch.arange(width, device=masks.device)
    big = max(height, width) + 1
    y_min = torch.where(rows, ys, big).amin(dim=-1)
    y_max = torch.where(rows, ys, -1).amax(dim=-1)
    x_min = torch.where(cols, xs, big).amin(dim=-1)
    x_max = torch.where(cols, xs, -1).amax(dim=-1)
    return torch.stack([area, x_min, y_min, x_max, y_max], dim=-1).to(torch.int64)


def _finite_threshold(value: float) -> float:
    """A mask-logit threshold: any finite float."""
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInputError(f"mask_threshold must be finite, got {value}")
    return value


class Segmenter:
    """Image segmenter: ``set_image`` once, then ``segment`` any number of prompt batches."""

    def __init__(self, model: LoadedModel, mask_threshold: float = 0.0,
                 decoder_batch: int | None = None) -> None:
        """Wrap a ``LoadedModel`` (see ``load_model``).

        ``mask_threshold`` is the mask-logit threshold of the returned masks (0 = SAM's own;
        higher gives tighter masks, lower looser ones). ``decoder_batch``: prompts per mask-decoder
        call (default: ``CPU_DECODER_BATCH`` on a CPU, ``MAX_DECODER_BATCH`` on a GPU); results
        do not depend on it.
        """
        if not isinstance(model, LoadedModel):
            raise TypeError(f"Segmenter needs a LoadedModel, got {type(model).__name__}")
        self.model = model
        self.mask_threshold = _finite_threshold(mask_threshold)
        if decoder_batch is None:
            on_cpu = torch.device(model.device).type == "cpu"
            decoder_batch = CPU_DECODER_BATCH if on_cpu else MAX_DECODER_BATCH
        if isinstance(decoder_batch, bool) or not isinstance(decoder_batch, int) or decoder_batch < 1:
            raise InvalidInputError(f"decoder_batch must be a positive integer, got {decoder_batch!r}")
        self.decoder_batch = decoder_batch
        self._features: list[torch.Tensor] | None = None  # [s0, s1, embeddings], each (1, C, h, w)
        self._image_pe: torch.Tensor | None = None
        self._image_hw: tuple[int, int] | None = None
        self.last_low_res_logits: torch.Tensor | None = None

    @classmethod
    def load(cls, name: str = "sam2.1-hiera-small", **kwargs: Any) -> Segmenter:
        """``Segmenter(load_model(name, **kwargs))``."""
        return cls(load_model(name, **kwargs))

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(H, W)`` of the current image, or None before ``set_image``."""
        return self._image_hw

    def reset_image(self) -> None:
        """Forget the cached image embeddings."""
        self._features = None
        self._image_pe = None
        self._image_hw = None
        self.last_low_res_logits = None

    def set_image(self, image: np.ndarray, encoding: str = "rgb8") -> None:
        """Encode an image (one image-encoder pass) and cache its embeddings."""
        image = validate_image(image)
        rgb = to_rgb(image, encoding)
        lm = self.model
        net = lm.model
        if net is None:
            raise InvalidInputError("the model has been released")
        pixels = preprocess_image(rgb, lm.image_size, lm.device)
        with lm.autocast():
            out = net.get_image_features(pixels, return_dict=True)
            maps = list(out.fpn_hidden_states)  # each (h*w, 1, C)
            maps[-1] = maps[-1] + net.no_memory_embedding
            features = [m.permute(1, 2, 0).reshape(1, -1, *size)
                        for m, size in zip(maps, net.backbone_feature_sizes, strict=True)]
            image_pe = net.get_image_wide_positional_embeddings()
        self._features = features
        self._image_pe = image_pe
        self._image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        self.last_low_res_logits = None

    def segment_image(self, image: np.ndarray, prompts: list[Prompt], encoding: str = "rgb8",
                      multimask_output: bool = False) -> list[ObjectResult]:
        """``set_image(image, encoding)`` then ``segment(prompts, multimask_output)``."""
        self.set_image(image, encoding)
        return self.segment(prompts, multimask_output=multimask_output)

    def segment(self, prompts: list[Prompt], multimask_output: bool = False,
                return_logits: bool = False) -> list[ObjectResult]:
        """Segment one object per prompt on the current image; results in prompt order.

        ``return_logits``: fill ``ObjectResult.low_res_logits`` (the chosen mask's, clamped to +-32)
        for feeding back as ``Prompt.mask_logits``.

        Raises:
            InvalidInputError: no image set, or a bad prompt (nothing is computed then).
        """
        if self._features is None or self._image_hw is None:
            raise InvalidInputError("no image: call set_image() first")
        if isinstance(prompts, Prompt):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts:
            self.last_low_res_logits = None
            return []
        hw = self._image_hw
        checked = [validate_prompt(p, hw) for p in prompts]
        logits, ious, obj_logits = self.predict_logits(checked, multimask_output=multimask_output)
        return self._results(checked, logits, ious, obj_logits, multimask_output, return_logits)

    def predict_logits(self, prompts: list[Prompt], multimask_output: bool = False
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoder outputs for validated prompts, on the device, in prompt order.

        Returns ``(low_res_logits (P, K, S/4, S/4), iou (P, K), object_score_logits (P,))`` with
        ``K = 3`` for multimask output, else 1. Logits are not clamped.
        """
        lm = self.model
        if lm.model is None:
            raise InvalidInputError("the model has been released")
        size = lm.image_size
        hw = self._image_hw
        tokens = [prompt_tokens(p, hw, size) for p in prompts]
        groups: dict[int, list[int]] = {}
        for i, (coords, _) in enumerate(tokens):
            groups.setdefault(coords.shape[0], []).append(i)
        num = len(prompts)
        out_logits: list[torch.Tensor | None] = [None] * num
        out_iou: list[torch.Tensor | None] = [None] * num
        out_obj: list[torch.Tensor | None] = [None] * num
        with lm.autocast():
            for count, members in groups.items():
                for start in range(0, len(members), self.decoder_batch):
                    idx = members[start:start + self.decoder_batch]
                    logits, iou, obj = self._decode_group(
                        [tokens[i] for i in idx], [prompts[i] for i in idx], count, multimask_output)
                    for j, i in enumerate(idx):
                        out_logits[i], out_iou[i], out_obj[i] = logits[j], iou[j], obj[j]
            logits = torch.stack(out_logits).float()
            iou = torch.stack(out_iou).float()
            obj = torch.stack(out_obj).float()
        return logits, iou, obj

    def _dense_input(self, prompt: Prompt) -> torch.Tensor | None:
        """The prompt's low-res mask logits ``(1, 1, S/4, S/4)``: given, from a binary mask, or None."""
        lm = self.model
        if prompt.mask_logits is not None:
            return mask_logits_to_lowres(prompt.mask_logits, lm.image_size, lm.device)
        if prompt.mask is not None:
            return mask_prompt_to_lowres(prompt.mask, lm.image_size, lm.device)
        return None

    def _decode_group(self, tokens: list[tuple[np.ndarray, np.ndarray]], prompts: list[Prompt],
                      count: int, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lm = self.model
        net = lm.model
        dev = lm.device
        batch = len(tokens)
        encoder = net.prompt_encoder
        embeddings = self._features[-1]
        channels = embeddings.shape[1]
        if count:
            coords = torch.from_numpy(np.stack([c for c, _ in tokens])).to(dev)[:, None]  # (B, 1, T, 2)
            labels = torch.from_numpy(np.stack([lab for _, lab in tokens])).to(dev)[:, None]  # (B, 1, T)
            sparse = encoder._embed_points(coords, labels, pad=False)
        else:
            sparse = torch.zeros(batch, 1, 0, channels, device=dev, dtype=embeddings.dtype)
        dense = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
            batch, -1, *encoder.image_embedding_size)
        lows = [self._dense_input(p) for p in prompts]
        with_mask = [j for j, m in enumerate(lows) if m is not None]
        if with_mask:
            low = torch.cat([lows[j] for j in with_mask])
            mask_dense = encoder.mask_embed(low)
            dense = dense.clone()
            dense[with_mask] = mask_dense.to(dense.dtype)
        s0, s1 = self._features[0], self._features[1]
        low_res, iou, _, obj = net.mask_decoder(
            image_embeddings=embeddings.expand(batch, -1, -1, -1),
            image_positional_embeddings=self._image_pe.expand(batch, -1, -1, -1),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            high_resolution_features=[s0.expand(batch, -1, -1, -1), s1.expand(batch, -1, -1, -1)],
        )
        # (B, 1, K, h, w), (B, 1, K), (B, 1, 1)
        return low_res[:, 0], iou[:, 0], obj[:, 0, 0]

    def _results(self, prompts: list[Prompt], logits: torch.Tensor, ious: torch.Tensor,
                 obj_logits: torch.Tensor, multimask_output: bool,
                 return_logits: bool = False) -> list[ObjectResult]:
        self.last_low_res_logits = logits.clamp(-LOW_RES_CLAMP, LOW_RES_CLAMP)
        with torch.inference_mode():
            num, num_k = ious.shape
            height, width = self._image_hw
            masks = torch.empty((num, num_k, height, width), dtype=torch.bool, device=logits.device)
            step = max(1, UPSAMPLE_CHUNK_BYTES // (num_k * height * width * 4))
            for start in range(0, num, step):
                chunk = upsample_logits(logits[start:start + step], self._image_hw)
                masks[start:start + step] = chunk > self.mask_threshold
            stats = _mask_stats(masks)  # (P, K, 5)
            # One host transfer for the numbers (ints are exact in float64), one for the masks.
            packed = torch.cat([
                ious.double(), torch.sigmoid(obj_logits.double())[:, None], obj_logits.double()[:, None],
                ious.argmax(dim=1).double()[:, None], stats.double().reshape(num, -1)], dim=1).cpu().numpy()
            masks_np = masks.cpu().numpy()
            best = torch.from_numpy(packed[:, num_k + 2].astype(np.int64)).to(logits.device)
            chosen = (self.last_low_res_logits[torch.arange(num, device=logits.device), best].cpu().numpy()
                      if return_logits else None)
        scalars_np = packed[:, : num_k + 2]
        best_np = packed[:, num_k + 2].astype(np.int64)
        stats_np = packed[:, num_k + 3:].reshape(len(prompts), num_k, 5).astype(np.int64)
        results = []
        for i, prompt in enumerate(prompts):
            k = int(best_np[i])
            area, x0, y0, x1, y1 = (int(v) for v in stats_np[i, k])
            bbox = (x0, y0, x1, y1) if area > 0 else (0, 0, -1, -1)
            obj_prob = float(scalars_np[i, num_k])
            obj_logit = float(scalars_np[i, num_k + 1])
            candidates = []
            if multimask_output:
                candidates = [(masks_np[i, j], float(scalars_np[i, j])) for j in range(num_k)]
            results.append(ObjectResult(
                object_id=prompt.object_id,
                mask=masks_np[i, k],
                score=float(scalars_np[i, k]),
                object_score=obj_prob,
                visible=bool(obj_logit > 0 and area > 0),
                bbox=bbox,
                area=area,
                candidates=candidates,
                low_res_logits=None if chosen is None else chosen[i].copy(),
            ))
        return results
