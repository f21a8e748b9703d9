"""Image-only weights (issue 14): a ``Sam2Model`` checkpoint and the model card's artifact.

The card's artifact is a directory with ``model.safetensors`` (an image-only ``Sam2Model`` in
FP32, no config.json) and ``model_int8.pt`` (a torchao INT8 state dict from ``torch.save``).
The files here are made in that format from the randomized test-micro weights: they segment
exactly like the video checkpoint's image path, INT8 where torchao loads the ``.pt`` with
``weights_only=True``, FP32 with a warning where it cannot, and tracking is refused.
"""

from __future__ import annotations

import logging
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from anima_sam2_ros.engine import ModelLoadError, Prompt, Segmenter, Tracker, load_model

PROMPTS = [Prompt(box=np.array([12.0, 18.0, 62.0, 52.0]), object_id=1),
           Prompt(points=np.array([[90.0, 30.0]]), labels=np.array([1]), object_id=2)]


def _segment(lm, scene):
    return Segmenter(lm).segment_image(scene, PROMPTS)


def _same(a, b, tol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.object_id == y.object_id
        assert np.array_equal(x.mask, y.mask)
        assert abs(x.score - y.score) <= tol, (x.score, y.score)
        if tol == 0.0:
            assert np.array_equal(x.low_res_logits, y.low_res_logits)
        else:
            assert np.abs(x.low_res_logits - y.low_res_logits).max() <= tol


@pytest.fixture(scope="module")
def card_dir(ref_image_model, tmp_path_factory):
    """The card's two files, from the image-only copy of the randomized test-micro weights."""
    from anima_sam2_ros.engine.image_only import build_image_model
    from anima_sam2_ros.engine.registry import resolve
    from anima_sam2_ros.engine.torchao_support import quantize_dynamic_int8

    path = tmp_path_factory.mktemp("card")
    state = {k: v.contiguous() for k, v in ref_image_model.state_dict().items()}
    save_file(state, str(path / "model.safetensors"))
    quantized = build_image_model(resolve("test-micro")[0], 0)
    quantized.load_state_dict(state)
    quantize_dynamic_int8(quantized)
    torch.save(quantized.state_dict(), str(path / "model_int8.pt"))
    return path, quantized


def test_image_only_checkpoint_segments_like_the_video_checkpoint_and_refuses_to_track(
        micro_model, ref_image_model, scene, tmp_path, caplog):
    path = tmp_path / "image_only"
    ref_image_model.save_pretrained(str(path))
    with caplog.at_level(logging.WARNING, logger="anima_sam2_ros.engine"):
        lm = load_model("test-micro", weights=str(path), device="cpu")
    assert "image-only" in caplog.text
    assert not lm.can_track and type(lm.model).__name__ == "Sam2Model" and "image-only" in repr(lm)
    assert micro_model.can_track and micro_model.tracking_refusal is None
    _same(_segment(lm, scene), _segment(micro_model, scene))
    with pytest.raises(ModelLoadError, match="image-only.*cannot track.*facebook/test-micro"):
        Tracker(lm)


def test_card_artifact_fp32(card_dir, micro_model, scene):
    path, _ = card_dir
    lm = load_model("test-micro", weights=str(path), precision="fp32", device="cpu")
    assert lm.precision == "fp32" and not lm.can_track
    _same(_segment(lm, scene), _segment(micro_model, scene))
    with pytest.raises(ModelLoadError, match="model card's model.safetensors"):
        Tracker(lm)


def test_card_artifact_int8_from_model_int8_pt(card_dir, scene):
    path, quantized = card_dir
    lm = load_model("test-micro-int8", weights=str(path), device="cpu")
    assert lm.precision == "int8" and lm.name == "test-micro-int8" and not lm.can_track
    weight = lm.model.mask_decoder.iou_prediction_head.proj_in.weight
    assert type(weight).__name__ == "Int8Tensor"
    stored = torch.load(str(path / "model_int8.pt"), weights_only=True)
    key = "mask_decoder.iou_prediction_head.proj_in.weight"
    assert torch.equal(weight.dequantize(), stored[key].dequantize())
    # The same outputs as the quantized network that wrote the file.
    from anima_sam2_ros.engine.loading import LoadedModel

    ref = LoadedModel(quantized, name="ref", device="cpu", precision="int8", image_size=128,
                      weights_source="ref", is_dummy=False, tracking_refusal="image-only")
    _same(_segment(lm, scene), _segment(ref, scene))
    with pytest.raises(ModelLoadError, match="image-only"):
        Tracker(lm)


class _Foreign:
    """An object torch.load(weights_only=True) must refuse to unpickle."""


@pytest.mark.parametrize("content", ["foreign", "truncated", "plain-fp32", "not-a-dict"])
def test_card_int8_file_that_cannot_load_falls_back_to_fp32(card_dir, micro_model, scene, tmp_path,
                                                            caplog, content):
    src, _ = card_dir
    path = tmp_path / "card"
    path.mkdir()
    os.link(src / "model.safetensors", path / "model.safetensors")
    target = path / "model_int8.pt"
    if content == "foreign":
        with open(target, "wb") as fh:
            pickle.dump({"x": _Foreign()}, fh)
    elif content == "truncated":
        data = (src / "model_int8.pt").read_bytes()
        target.write_bytes(data[: len(data) // 2])
    elif content == "plain-fp32":  # an FP32 state dict under the INT8 name
        torch.save(micro_model_image_state(src), str(target))
    else:
        torch.save([1, 2, 3], str(target))
    with caplog.at_level(logging.WARNING, logger="anima_sam2_ros.engine"):
        lm = load_model("test-micro", weights=str(path), precision="int8", device="cpu")
    assert "model_int8.pt not used" in caplog.text and "FP32" in caplog.text
    assert lm.precision == "fp32"
    _same(_segment(lm, scene), _segment(micro_model, scene))


def micro_model_image_state(card):
    from safetensors.torch import load_file

    return load_file(str(card / "model.safetensors"))


def test_card_dir_of_another_architecture_is_refused(card_dir, tmp_path):
    path, _ = card_dir
    with pytest.raises(ModelLoadError, match="missing tensors|shapes do not match"):
        load_model("sam2.1-hiera-tiny", weights=str(path), device="cpu")
