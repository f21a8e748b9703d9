"""Frames to network input, prompt coordinates to model space, logits back to source size.

Two definitions, one per path, each the one of the Meta predictor that path reproduces:

* ``preprocess_image`` (``Segmenter``, Meta's ``SAM2ImagePredictor``): uint8 RGB -> float in
  [0, 1] -> ``F.interpolate(size=(S, S), mode="bilinear", antialias=True, align_corners=False)``
  -> ImageNet mean/std.
* ``preprocess_video_frame`` (``Tracker``, Meta's video predictor, ``load_video_frames``): uint8
  RGB -> bicubic resize of the **uint8** pixels exactly as ``PIL.Image.resize`` does it
  (``pil_resize.py``) -> float64 / 255 -> float32 -> ImageNet mean/std. The two differ by up to
  a few grey levels, which moves mask logits by ~0.5, so each path uses its own reference's.

Everything after the host-to-device copy of the uint8 frame runs in torch on the model's device.
The image is stretched to S x S (no padding, aspect ratio not kept), so a source pixel (x, y) maps
to (x * S / W, y * S / H) on both paths.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InvalidInputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
# Scale/bias SAM 2 uses to turn a binary mask into mask logits (SAM2Base._use_mask_as_output,
# sigmoid_scale_for_mem_enc / sigmoid_bias_for_mem_enc): 0 -> -10, 1 -> +10.
MASK_LOGIT_SCALE = 20.0
MASK_LOGIT_BIAS = -10.0


def to_rgb(image: np.ndarray, encoding: str = "rgb8") -> np.ndarray:
    """Return an ``HxWx3`` uint8 RGB array for an ``rgb8``/``bgr8``/``mono8`` (or rgba8/bgra8) image.

    ``rgb8`` input is returned as is (no copy); other encodings are converted (a copy).
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InvalidInputError("image must be a numpy uint8 array")
    enc = str(encoding).lower()
    if enc not in ENCODINGS:
        raise InvalidInputError(f"unsupported encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    if enc == "mono8":
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim != 2:
            raise InvalidInputError(f"mono8 image must be HxW (or HxWx1), got shape {image.shape}")
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = 4 if enc in ("rgba8", "bgra8") else 3
    if image.ndim != 3 or image.shape[2] != channels:
        raise InvalidInputError(f"{enc} image must be HxWx{channels}, got shape {image.shape}")
    if enc == "rgb8":
        return image
    if enc == "rgba8":
        return np.ascontiguousarray(image[:, :, :3])
    return np.ascontiguousarray(image[:, :, 2::-1])  # bgr8 / bgra8


def preprocess_image(image_rgb: np.ndarray, image_size: int, device: Any,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``HxWx3`` uint8 RGB -> normalised ``(1, 3, S, S)`` tensor on ``device``.

    Float in [0, 1], bilinear antialiased resize (align_corners=False) to S x S, ImageNet
    mean/std; computed in float32, returned in ``dtype``.
    """
    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
            or image_rgb.shape[2] != 3:
        raise InvalidInputError("preprocess_image expects an HxWx3 uint8 RGB array")
    size = int(image_size)
    pixels = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(device, non_blocking=True)
    x = pixels.permute(2, 0, 1).unsqueeze(0).to(torch.float32).div_(255.0)
    if tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(dtype)


def preprocess_video_frame(image_rgb: np.ndarray, image_size: int, device: Any,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``HxWx3`` uint8 RGB -> normalised ``(1, 3, S, S)`` tensor on ``device``, as Meta's video predictor.

    ``np.array(Image.fromarray(rgb).resize((S, S))) / 255.0`` (bicubic on uint8, in float64), cast
    to float32, minus ImageNet mean, divided by std in float32; returned in ``dtype``.
    """
    from .pil_resize import pil_bicubic_resize

    if not isinstance(image_rgb, np.ndarray) or image_rgb.dtype != np.uint8 or image_rgb.ndim != 3 \
            or image_rgb.shape[2] != 3:
        raise InvalidInputError("preprocess_video_frame expects an HxWx3 uint8 RGB array")
    size = int(image_size)
    pixels = torch.from_numpy(np.ascontiguousarray(image_rgb)).to(device, non_blocking=True)
    resized = pil_bicubic_resize(pixels.permute(2, 0, 1), (size, size))
    x = _unit_float32(resized.device)[resized.long()].unsqueeze(0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    return x.to(dtype)


_UNIT: dict = {}


def _unit_float32(device: torch.device) -> torch.Tensor:
    """``float32(v / 255.0)`` computed in float64 for v in 0..255: Meta's numpy division, exactly."""
    table = _UNIT.get(device)
    if table is None:
        table = (torch.arange(256, dtype=torch.float64) / 255.0).to(torch.float32).to(device)
        _UNIT[device] = table
    return table


def scale_points(points_xy: np.ndarray, src_hw: tuple, image_size: int) -> np.ndarray:
    """Source-pixel ``(..., 2)`` x/y coordinates -> model-input pixels (float32).

    ``x * S / W``, ``y * S / H``; boxes ``(x0, y0, x1, y1)`` go through as two points.
    """
    pts = np.asarray(points_xy, dtype=np.float64)
    height, width = int(src_hw[0]), int(src_hw[1])
    scale = np.array([image_size / width, image_size / height], dtype=np.float64)
    return (pts * scale).astype(np.float32)


def mask_prompt_to_lowres(mask: np.ndarray, image_size: int, device: Any) -> torch.Tensor:
    """Binary source-size mask ``(H, W)`` -> ``(1, 1, S/4, S/4)`` float32 mask logits on ``device``.

    Non-zero = object. The 0/1 mask is resized (bilinear, antialias, align_corners=False) to the
    decoder's low-res grid (S/4 = 256 for S = 1024, the size of the logits SAM returns), then
    mapped to logits with SAM 2's binary-mask scale: ``20 * m - 10`` (0 -> -10, 1 -> +10).
    """
    m = np.asarray(mask)
    if m.ndim != 2 or m.size == 0:
        raise InvalidInputError(f"mask must be a non-empty HxW array, got shape {m.shape}")
    low = int(image_size) // 4
    t = torch.from_numpy(np.ascontiguousarray(m != 0)).to(device).to(torch.float32)[None, None]
    if tuple(t.shape[-2:]) != (low, low):
        t = F.interpolate(t, size=(low, low), mode="bilinear", align_corners=False, antialias=True)
    return t * MASK_LOGIT_SCALE + MASK_LOGIT_BIAS


def mask_logits_to_lowres(logits: np.ndarray, image_size: int, device: Any) -> torch.Tensor:
    """Low-res mask logits ``(h, w)`` -> ``(1, 1, S/4, S/4)`` float32 on ``device`` (Meta's ``mask_input``).

    Used as they are; resized (bilinear, antialias, align_corners=False) only when not already
    ``S/4 x S/4``, as ``SAM2ImagePredictor._predict`` does.
    """
    low = int(image_size) // 4
    t = torch.as_tensor(np.ascontiguousarray(logits, dtype=np.float32)).to(device)[None, None]
    if tuple(t.shape[-2:]) != (low, low):
        t = F.interpolate(t, size=(low, low), mode="bilinear", align_corners=False, antialias=True)
    return t


def upsample_logits(low_res: torch.Tensor, src_hw: tuple) -> torch.Tensor:
    """``(..., h, w)`` logits -> ``(..., H, W)`` float32, bilinear, align_corners=False (no antialias).

    Threshold the result at 0 for masks (Meta's ``postprocess_masks``).
    """
    if low_res.dim() < 2:
        raise InvalidInputError("low_res must have at least 2 dimensions")
    lead = low_res.shape[:-2]
    x = low_res.reshape(-1, 1, *low_res.shape[-2:]).to(torch.float32)
    height, width = int(src_hw[0]), int(src_hw[1])
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    return x.reshape(*lead, height, width)
