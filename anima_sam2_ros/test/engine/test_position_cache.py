"""The position-encoding cache: same values as transformers' per-frame computation, bounded, safe."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from anima_sam2_ros.engine import Prompt, Segmenter, Tracker, load_model
from anima_sam2_ros.engine.position_cache import (
    MAX_ENTRIES,
    CachedPositionEncoding,
    bypass_position_cache,
    cache_position_encodings,
    position_caches,
)


def _fresh_net(loaded):
    """A transformers ``Sam2VideoModel`` of the same config, never wrapped."""
    from transformers import Sam2VideoModel

    return Sam2VideoModel(loaded.model.config).eval()


def test_load_model_wraps_the_sine_encoders_and_keeps_the_state_dict(micro_model):
    caches = {type(c.inner).__name__ for c in position_caches(micro_model.model)}
    assert caches == {"Sam2SinePositionEmbedding", "Sam2VideoPositionEmbeddingSine"}
    assert isinstance(micro_model.model.vision_encoder.neck.position_encoding, CachedPositionEncoding)
    stock = _fresh_net(micro_model)
    assert list(micro_model.model.state_dict()) == list(stock.state_dict())
    assert cache_position_encodings(micro_model.model) == []  # idempotent


def test_cached_values_equal_transformers_and_are_reused(micro_model):
    pe = micro_model.model.vision_encoder.neck.position_encoding
    pe.clear()
    shape = torch.Size([1, 32, 16, 16])
    with torch.inference_mode():
        first = pe(shape, "cpu", torch.float32)
        again = pe(shape, torch.device("cpu"), torch.float32)
        with bypass_position_cache(micro_model.model):
            fresh = pe(shape, "cpu", torch.float32)
        half = pe(shape, "cpu", torch.bfloat16)
    assert again is first
    assert torch.equal(first, fresh)  # (transformers memoises the last shape itself: maybe the same tensor)
    assert torch.equal(first, pe.inner(shape, "cpu", torch.float32))
    assert half.dtype == torch.bfloat16 and len(pe._cache) == 2
    assert pe.enabled  # restored after the bypass block
    # Outside inference mode (autograd on) our cache is not read or filled.
    other = torch.Size([1, 32, 8, 8])
    outside = pe(other, "cpu", torch.float32)
    assert not outside.is_inference() and len(pe._cache) == 2
    with torch.inference_mode():
        assert torch.equal(pe(other, "cpu", torch.float32), outside) and len(pe._cache) == 3
    # A padding mask is never cached.
    with torch.inference_mode():
        masked = pe(shape, "cpu", torch.float32, mask=torch.ones(1, 16, 16))
    assert masked is not first and len(pe._cache) == 3


def test_cache_is_bounded_and_dropped_on_device_or_dtype_moves(micro_model):
    pe = CachedPositionEncoding(micro_model.model.vision_encoder.neck.position_encoding.inner)
    with torch.inference_mode():
        for size in range(1, 3 * MAX_ENTRIES):
            pe(torch.Size([1, 32, size, size]), "cpu", torch.float32)
            assert len(pe._cache) <= MAX_ENTRIES
    assert pe.cache_nbytes() > 0
    pe.to(torch.float64)
    assert pe._cache == {} and pe.cache_nbytes() == 0


def test_tracking_with_cache_equals_tracking_without(micro_model, scene):
    """Outputs bit for bit equal; the cached encodings are never modified in place downstream."""
    net = micro_model.model
    frames = [np.roll(scene, 2 * t, axis=1) for t in range(10)]
    prompt = [Prompt(object_id=1, box=np.array([12.0, 18.0, 62.0, 52.0])),
              Prompt(object_id=2, points=np.array([[70.0, 20.0]]), labels=np.array([1]))]

    def run(bypass: bool):
        trk = Tracker(micro_model)
        seg = Segmenter(micro_model)
        outs = []
        for t, img in enumerate(frames):
            with bypass_position_cache(net) if bypass else contextlib.nullcontext():
                res = trk.step(img, prompt if t == 0 else None)
                seg_res = seg.segment_image(img, prompt)
            outs.append((trk.last_low_res_logits.clone(), [r.mask for r in res], [r.mask for r in seg_res]))
        return outs

    for c in position_caches(net):
        c.clear()
    cached = run(bypass=False)
    assert sum(c.cache_nbytes() for c in position_caches(net)) > 0
    stock = run(bypass=True)
    for t, (a, b) in enumerate(zip(cached, stock, strict=True)):
        assert torch.equal(a[0], b[0]), f"frame {t}: tracker logits differ"
        assert all(np.array_equal(x, y) for x, y in zip(a[1], b[1], strict=True)), f"frame {t}: tracker masks"
        assert all(np.array_equal(x, y) for x, y in zip(a[2], b[2], strict=True)), f"frame {t}: segmenter"
    for c in position_caches(net):  # still the values transformers computes
        for (shape, device, dtype), value in c._cache.items():
            assert torch.equal(value, c.inner(torch.Size(shape), device, dtype)), shape


def test_int8_artifact_and_dummy_loads_are_cached(micro_dir, tmp_path):
    from anima_sam2_ros.quant import export as artifact

    dummy = load_model("test-micro", weights="dummy", device="cpu")
    assert len(position_caches(dummy.model)) == 2
    quantized = load_model("test-micro", weights=micro_dir, precision="int8", device="cpu")
    out = artifact.export_int8_artifact(quantized, tmp_path / "int8")
    assert len(position_caches(load_model("test-micro", weights=str(out), device="cpu").model)) == 2
