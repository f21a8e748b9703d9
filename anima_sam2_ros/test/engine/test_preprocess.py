"""preprocess.py against its definition, and coordinate mappings against the resized image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from anima_sam2_ros.engine import InvalidInputError
from anima_sam2_ros.engine.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    mask_prompt_to_lowres,
    preprocess_image,
    scale_points,
    to_rgb,
    upsample_logits,
)


def _reference(img: np.ndarray, size: int) -> torch.Tensor:
    """The definition, written out independently: float64 in numpy, then torch resize."""
    x = img.astype(np.float64) / 255.0
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    return ((t - mean) / std).float()


def test_to_rgb_encodings():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert to_rgb(rgb, "rgb8") is rgb
    np.testing.assert_array_equal(to_rgb(np.ascontiguousarray(rgb[..., ::-1]), "bgr8"), rgb)
    mono = rgb[..., 0].copy()
    out = to_rgb(mono, "mono8")
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 2], mono)
    np.testing.assert_array_equal(to_rgb(mono[..., None], "mono8"), out)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb(rgba, "rgba8"), rgb)


@pytest.mark.parametrize(("image", "encoding"), [
    (np.zeros((4, 4), np.uint8), "rgb8"),
    (np.zeros((4, 4, 3), np.uint8), "mono8"),
    (np.zeros((4, 4, 3), np.float32), "rgb8"),
    (np.zeros((4, 4, 3), np.uint8), "yuv422"),
])
def test_to_rgb_rejects(image, encoding):
    with pytest.raises(InvalidInputError):
        to_rgb(image, encoding)


@pytest.mark.parametrize("hw", [(90, 120), (200, 37), (128, 128), (1, 1), (301, 517)])
def test_preprocess_matches_definition(hw):
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    out = preprocess_image(img, 128, "cpu")
    assert out.shape == (1, 3, 128, 128) and out.dtype == torch.float32
    torch.testing.assert_close(out, _reference(img, 128), atol=2e-5, rtol=0)


def test_preprocess_constant_image_and_dtype():
    img = np.full((50, 70, 3), (255, 0, 128), np.uint8)
    out = preprocess_image(img, 64, "cpu", dtype=torch.bfloat16)
    assert out.dtype == torch.bfloat16
    expect = (np.array([255, 0, 128]) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    for c in range(3):
        assert torch.allclose(out[0, c].float(), torch.tensor(float(expect[c])), atol=2e-2)


def test_scale_points_corners():
    pts = np.array([[0, 0], [120, 90], [60, 45], [30, 90]], float)
    out = scale_points(pts, (90, 120), 1024)
    np.testing.assert_allclose(out, [[0, 0], [1024, 1024], [512, 512], [256, 1024]], atol=1e-4)
    assert out.dtype == np.float32


@settings(max_examples=25, deadline=None)
@given(h=st.integers(20, 160), w=st.integers(20, 160), fy=st.floats(0.2, 0.8), fx=st.floats(0.2, 0.8))
def test_scale_points_follows_the_resized_image(h, w, fy, fx):
    """A blob's centroid in the source maps onto its centroid in the resized network input."""
    size = 128
    img = np.zeros((h, w, 3), np.uint8)
    cy, cx = int(fy * h), int(fx * w)
    ry, rx = max(2, h // 10), max(2, w // 10)
    img[cy - ry:cy + ry, cx - rx:cx + rx] = 255
    ys, xs = np.nonzero(img[..., 0])
    # Centroid in continuous pixel coordinates (pixel i covers [i, i+1)).
    src = np.array([[xs.mean() + 0.5, ys.mean() + 0.5]])
    t = preprocess_image(img, size, "cpu")[0, 0].numpy()
    t = t - t.min()
    yy, xx = np.mgrid[0:size, 0:size]
    dst = np.array([(t * (xx + 0.5)).sum() / t.sum(), (t * (yy + 0.5)).sum() / t.sum()])
    np.testing.assert_allclose(scale_points(src, (h, w), size)[0], dst, atol=0.35)


def test_mask_prompt_to_lowres():
    mask = np.zeros((90, 120), bool)
    mask[:, :60] = True
    low = mask_prompt_to_lowres(mask, 128, "cpu")
    assert low.shape == (1, 1, 32, 32) and low.dtype == torch.float32
    assert torch.allclose(low[0, 0, :, :15], torch.tensor(10.0), atol=1e-4)
    assert torch.allclose(low[0, 0, :, 17:], torch.tensor(-10.0), atol=1e-4)
    full = mask_prompt_to_lowres(np.full((32, 32), 7, np.uint8), 128, "cpu")
    assert torch.all(full == 10.0)


def test_upsample_logits():
    low = torch.randn(2, 3, 32, 32)
    out = upsample_logits(low, (90, 120))
    assert out.shape == (2, 3, 90, 120) and out.dtype == torch.float32
    ref = F.interpolate(low.reshape(6, 1, 32, 32), size=(90, 120), mode="bilinear", align_corners=False)
    torch.testing.assert_close(out, ref.reshape(2, 3, 90, 120))
    const = upsample_logits(torch.full((32, 32), 3.0), (7, 500))
    assert const.shape == (7, 500) and torch.allclose(const, torch.tensor(3.0))
    same = torch.randn(1, 32, 32)
    assert torch.equal(upsample_logits(same, (32, 32)), same)
