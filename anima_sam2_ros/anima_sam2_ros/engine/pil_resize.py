"""Bicubic resize of uint8 images exactly as Pillow's ``Image.resize`` does it, in torch.

Meta's SAM 2 video predictor resizes every frame with ``PIL.Image.resize`` (default filter:
bicubic) while it is still uint8, and only then converts to float. Reproducing the tracker's
reference output needs those exact pixels, on the model's device, without PIL at run time. This is
Pillow's ``ImagingResample`` for 8-bit images (``libImaging/Resample.c``), step by step:

* per output pixel, a window of source pixels: ``center = (i + 0.5) * scale``, the bicubic filter
  (``a = -0.5``, support 2) stretched by ``max(scale, 1)`` when downscaling, window ends rounded
  with C's ``(int)(v + 0.5)`` and clipped to the image;
* the weights in double precision, normalised by their sum, then fixed point: 22 fractional bits,
  rounded half away from zero;
* two passes, each accumulating in int32 from ``1 << 21`` and rounding back to uint8 (``>> 22``,
  clipped to 0..255) before the next: horizontal first, unless the height shrinks by more than
  twice as many pixels as the width (then vertical first; Pillow 13's ``ImagingResampleInner``).
  A pass whose size is unchanged is skipped, as Pillow skips it. Products stay below 2**31.

The weights are computed once per (source size, target size) on the CPU with numpy (float64, in
Pillow's order of operations) and cached on the device; the passes are a few gathers and integer
multiply-adds on the device.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point precision for 8-bit images (22)
BICUBIC_SUPPORT = 2.0
_A = -0.5  # Pillow's bicubic parameter


def _bicubic(x: np.ndarray) -> np.ndarray:
    """Pillow's ``bicubic_filter`` (same expression order, float64)."""
    x = np.abs(x)
    inner = ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1
    outer = (((x - 5) * x + 8) * x - 4) * _A
    return np.where(x < 1.0, inner, np.where(x < 2.0, outer, 0.0))


@functools.lru_cache(maxsize=32)
def pil_coefficients(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices ``(out, K)`` int64 and fixed-point weights ``(out, K)`` int32 of one pass.

    Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``; taps beyond a window's end have
    weight 0 (and a valid index).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    ss = 1.0 / filterscale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)  # C (int) truncates
    xmax = np.minimum(np.trunc(center + support + 0.5), in_size).astype(np.int64) - xmin
    taps = np.arange(ksize, dtype=np.int64)
    valid = taps[None, :] < xmax[:, None]
    weights = np.where(valid, _bicubic((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * ss), 0.0)
    total = np.zeros(out_size, dtype=np.float64)
    for k in range(ksize):  # Pillow sums the taps in order; keep its rounding
        total = total + weights[:, k]
    weights = np.where(total[:, None] != 0.0, weights / np.where(total == 0.0, 1.0, total)[:, None], weights)
    fixed = weights * float(1 << PRECISION_BITS)
    fixed = np.trunc(np.where(fixed < 0, fixed - 0.5, fixed + 0.5)).astype(np.int32)
    index = np.minimum(xmin[:, None] + taps[None, :], in_size - 1)
    return index, fixed


@functools.lru_cache(maxsize=32)
def _device_coefficients(in_size: int, out_size: int,
                         device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    index, fixed = pil_coefficients(in_size, out_size)
    return torch.from_numpy(index).to(device), torch.from_numpy(fixed).to(device)


def _pass_rows(x: torch.Tensor, out_size: int) -> torch.Tensor:
    """One Pillow pass along dim 1 of a ``(C, n, L)`` int32 tensor of 0..255 -> ``(C, out, L)``.

    Each tap gathers whole contiguous rows (``index_select`` on dim 1), so the pass is K row
    copies and integer multiply-adds, whichever image axis the rows hold.
    """
    channels, in_size, length = x.shape
    index, fixed = _device_coefficients(in_size, out_size, x.device)
    acc = torch.full((channels, out_size, length), 1 << (PRECISION_BITS - 1), dtype=torch.int32,
                     device=x.device)
    tap = torch.empty_like(acc)
    for k in range(index.shape[1]):
        torch.index_select(x, 1, index[:, k], out=tap)
        acc.addcmul_(tap, fixed[:, k].view(1, -1, 1))
    return torch.bitwise_right_shift(acc, PRECISION_BITS).clamp_(0, 255)


def horizontal_first(in_h: int, in_w: int, out_h: int, out_w: int) -> bool:
    """Pillow's pass order: vertical first only when the height shrinks by more than twice the width."""
    return not (in_h - out_h > 0 and in_h - out_h > (in_w - out_w) * 2)


def _horizontal(x: torch.Tensor, out_w: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, H, w)``, on the transposed image so that taps gather rows."""
    if x.shape[2] == out_w:
        return x
    return _pass_rows(x.transpose(1, 2).contiguous(), out_w).transpose(1, 2)


def _vertical(x: torch.Tensor, out_h: int) -> torch.Tensor:
    """``(C, H, W)`` -> ``(C, h, W)``."""
    if x.shape[1] == out_h:
        return x
    return _pass_rows(x.contiguous(), out_h)


def pil_bicubic_resize(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(..., H, W)`` uint8 -> ``(..., h, w)`` uint8, equal to ``Image.resize((w, h), BICUBIC)``."""
    if pixels.dtype != torch.uint8:
        raise TypeError(f"pil_bicubic_resize expects uint8, got {pixels.dtype}")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"target size must be positive, got {size}")
    lead = pixels.shape[:-2]
    x = pixels.to(torch.int32).reshape(-1, *pixels.shape[-2:])  # (C, H, W)
    in_h, in_w = x.shape[1:]
    if horizontal_first(in_h, in_w, out_h, out_w):
        x = _horizontal(x, out_w)
        x = _vertical(x, out_h)
    else:
        x = _vertical(x, out_h)
        x = _horizontal(x, out_w)
    return x.to(torch.uint8).reshape(*lead, out_h, out_w)
