"""The tracker's preprocessing against Pillow itself: bit-exact resize, exact network input.

Pillow is the reference only (a test dependency): the engine never imports it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from anima_sam2_ros.engine.pil_resize import pil_bicubic_resize, pil_coefficients
from anima_sam2_ros.engine.preprocess import preprocess_image, preprocess_video_frame

# (source H, W) -> (target h, w): up- and downscaling, extreme aspect ratios, one-pixel sides,
# odd factors, camera sizes to SAM's 1024 and test-micro's 128, and unchanged axes.
SIZES = [
    ((480, 640), (1024, 1024)), ((720, 1280), (1024, 1024)), ((1080, 1920), (1024, 1024)),
    ((1024, 1024), (1024, 1024)), ((2048, 1536), (1024, 1024)), ((3000, 4000), (1024, 1024)),
    ((90, 120), (128, 128)), ((72, 96), (128, 128)), ((240, 320), (128, 128)),
    ((1, 1), (7, 7)), ((1, 300), (16, 16)), ((300, 1), (16, 16)), ((2, 3), (1, 1)),
    ((37, 200), (64, 64)), ((200, 37), (64, 33)), ((3, 700), (50, 1024)), ((17, 23), (31, 7)),
    ((128, 64), (128, 128)), ((64, 128), (128, 128)), ((999, 1001), (1000, 1000)),
    ((5, 5), (4096, 3)),
]


def _pil(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BICUBIC))


def _ours(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(img)
    t = t.permute(2, 0, 1) if t.dim() == 3 else t
    out = pil_bicubic_resize(t, hw)
    return (out.permute(1, 2, 0) if img.ndim == 3 else out).numpy()


@pytest.mark.parametrize(("src", "dst"), SIZES)
def test_bit_exact_against_pillow(src, dst):
    rng = np.random.default_rng(src[0] * 7919 + src[1] * 31 + dst[0])
    img = rng.integers(0, 256, (*src, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_ours(img, dst), _pil(img, dst))


def test_bit_exact_on_structured_images():
    """Hard edges and saturated areas, where the bicubic overshoot is clipped at 0 and 255."""
    yy, xx = np.mgrid[0:300, 0:410]
    img = np.zeros((300, 410, 3), np.uint8)
    img[..., 0] = np.where((xx // 7 + yy // 5) % 2 == 0, 255, 0)
    img[..., 1] = (xx * 255 // 409).astype(np.uint8)
    img[100:200, 150:260, 2] = 255
    for dst in ((1024, 1024), (128, 128), (301, 97), (77, 1300)):
        np.testing.assert_array_equal(_ours(img, dst), _pil(img, dst))


def test_single_channel_and_batch_shapes():
    rng = np.random.default_rng(3)
    mono = rng.integers(0, 256, (45, 61), dtype=np.uint8)
    np.testing.assert_array_equal(_ours(mono, (128, 100)), _pil(mono, (128, 100)))
    batch = torch.from_numpy(rng.integers(0, 256, (2, 3, 20, 30), dtype=np.uint8))
    out = pil_bicubic_resize(batch, (40, 16))
    assert out.shape == (2, 3, 40, 16) and out.dtype == torch.uint8
    first = batch[1].permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(out[1].permute(1, 2, 0).numpy(), _pil(first, (40, 16)))


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 260), w=st.integers(1, 260), oh=st.integers(1, 300), ow=st.integers(1, 300),
       seed=st.integers(0, 2**16))
def test_bit_exact_random_sizes(h, w, oh, ow, seed):
    img = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    np.testing.assert_array_equal(_ours(img, (oh, ow)), _pil(img, (oh, ow)))


def test_coefficients_are_normalised_fixed_point():
    """Every window's weights sum to 1.0 in 22-bit fixed point (up to rounding of each tap)."""
    for n_in, n_out in ((640, 1024), (1920, 1024), (4000, 1024), (1, 9)):
        _, fixed = pil_coefficients(n_in, n_out)
        sums = fixed.astype(np.int64).sum(axis=1)
        assert np.all(np.abs(sums - (1 << 22)) <= fixed.shape[1])


def _meta_video_frame(img: np.ndarray, size: int) -> torch.Tensor:
    """Meta's ``_load_img_as_tensor`` + ``load_video_frames`` normalisation, written out."""
    img_np = np.array(Image.fromarray(img).convert("RGB").resize((size, size))) / 255.0
    frame = torch.zeros(3, size, size, dtype=torch.float32)
    frame[:] = torch.from_numpy(img_np).permute(2, 0, 1)
    mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    frame -= mean
    frame /= std
    return frame[None]


@pytest.mark.parametrize(("hw", "size"), [((480, 640), 1024), ((72, 96), 128), ((1024, 1024), 1024),
                                          ((1080, 1920), 1024)])
def test_video_frame_equals_meta_video_predictor(hw, size):
    img = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    ours = preprocess_video_frame(img, size, "cpu")
    assert ours.shape == (1, 3, size, size) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, _meta_video_frame(img, size), rtol=0, atol=0)
    # The image predictor's pixels are another definition: after a resize they differ (that is
    # why each path has its own); without one, both are the same normalised pixels.
    diff = (preprocess_image(img, size, "cpu") - ours).abs().max().item()
    assert diff > 1e-3 if hw != (size, size) else diff < 1e-6
