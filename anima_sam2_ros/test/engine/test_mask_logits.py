"""``Prompt.mask_logits`` (Meta's ``mask_input``) against transformers' ``Sam2Model`` ``input_masks``.

Real randomized test-micro weights (conftest), the same preprocessed pixels on both sides; the
low-res grid of test-micro is 32 x 32 (image size 128), SAM 2.1's is 256 x 256.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anima_sam2_ros.engine import InvalidInputError, Prompt, Segmenter, Tracker
from anima_sam2_ros.engine.preprocess import mask_prompt_to_lowres, preprocess_image, scale_points
from anima_sam2_ros.engine.validation import validate_prompt

ATOL = RTOL = 1e-4
HW = (90, 120)
LOW = 32


@pytest.fixture()
def seg(micro_model, scene):
    s = Segmenter(micro_model)
    s.set_image(scene)
    return s


@pytest.fixture(scope="module")
def pixels(scene, micro_model):
    return preprocess_image(scene, micro_model.image_size, "cpu")


def _logits(seed: int, size: int = LOW) -> np.ndarray:
    """Low-res logits with structure: a blob of +8 on a -6 background, plus noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    blob = ((yy - 0.4) ** 2 + (xx - 0.3) ** 2 < 0.05).astype(np.float32)
    return (blob * 14 - 6 + rng.normal(0, 2, (size, size))).astype(np.float32)


def _ref(ref_model, pixels, logits, points=None, labels=None, box=None, multimask=False):
    kwargs = {}
    if points is not None:
        kwargs["input_points"] = torch.tensor(scale_points(points, HW, 128))[None, None]
        kwargs["input_labels"] = torch.tensor(labels)[None, None]
    if box is not None:
        kwargs["input_boxes"] = torch.tensor(scale_points(np.reshape(box, (2, 2)), HW, 128).reshape(1, 1, 4))
    with torch.inference_mode():
        return ref_model(pixel_values=pixels, input_masks=torch.as_tensor(logits)[None, None],
                         multimask_output=multimask, **kwargs)


def _predict(seg, prompts, multimask=False):
    return seg.predict_logits([validate_prompt(p, HW) for p in prompts], multimask_output=multimask)


def _check(seg, prompt, ref, multimask=False):
    logits, iou, obj = _predict(seg, [prompt], multimask)
    assert ref.pred_masks.abs().max() > 1.0, "weights too small for a meaningful comparison"
    torch.testing.assert_close(logits, ref.pred_masks[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(iou, ref.iou_scores[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(obj, ref.object_score_logits[0, :, 0], atol=ATOL, rtol=RTOL)
    return logits


POINT = np.array([[30.0, 35.0]], np.float32)
TWO = np.array([[30.0, 35.0], [100.0, 10.0]], np.float32)
BOX = np.array([12.0, 18.0, 62.0, 52.0], np.float32)


@pytest.mark.parametrize("multimask", [False, True])
def test_point_and_logits_match_sam2model(seg, ref_image_model, pixels, multimask):
    logits = _logits(1)
    ref = _ref(ref_image_model, pixels, logits, POINT, np.array([1]), multimask=multimask)
    ours = _check(seg, Prompt(points=POINT, labels=np.array([1]), mask_logits=logits), ref, multimask)
    # The logits matter: without them the answer is another one.
    without = _predict(seg, [Prompt(points=POINT, labels=np.array([1]))], multimask)[0]
    assert (ours - without).abs().max() > 1e-2


def test_points_box_and_logits_match_sam2model(seg, ref_image_model, pixels):
    logits = _logits(2)
    ref = _ref(ref_image_model, pixels, logits, TWO, np.array([1, 0]), box=BOX)
    _check(seg, Prompt(points=TWO, labels=np.array([1, 0]), box=BOX, mask_logits=logits), ref)
    ref_box = _ref(ref_image_model, pixels, logits, box=BOX)
    _check(seg, Prompt(box=BOX, mask_logits=logits[None]), ref_box)  # Meta's (1, h, w) form


def test_logits_alone_give_zero_sparse_tokens(seg, ref_image_model, pixels):
    """Mask logits alone: no sparse token, as Meta's image predictor (transformers would pad)."""
    logits = _logits(3)
    ours = _predict(seg, [Prompt(mask_logits=logits)])
    with torch.inference_mode():
        emb = ref_image_model.get_image_embeddings(pixels)
        dense = ref_image_model.prompt_encoder.mask_embed(torch.as_tensor(logits)[None, None])
        pe = ref_image_model.get_image_wide_positional_embeddings()
        ref_logits, ref_iou, _, ref_obj = ref_image_model.mask_decoder(
            image_embeddings=emb[-1], image_positional_embeddings=pe,
            sparse_prompt_embeddings=torch.zeros(1, 1, 0, dense.shape[1]), dense_prompt_embeddings=dense,
            multimask_output=False, high_resolution_features=emb[:-1])
    torch.testing.assert_close(ours[0], ref_logits[:, 0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours[1], ref_iou[:, 0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(ours[2], ref_obj[:, 0, 0], atol=ATOL, rtol=RTOL)


def test_binary_mask_equals_its_logits(seg):
    """A binary mask is +-10 logits: sending those logits gives the identical answer."""
    mask = np.zeros(HW, bool)
    mask[20:50, 15:60] = True
    as_logits = mask_prompt_to_lowres(mask, 128, "cpu")[0, 0].numpy()
    a = _predict(seg, [Prompt(points=POINT, mask=mask)])
    b = _predict(seg, [Prompt(points=POINT, mask_logits=as_logits)])
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, atol=0, rtol=0)


def test_other_sizes_are_resized_as_meta(seg, ref_image_model, pixels):
    """SAM 2.1-size (256 x 256) logits on test-micro: resized bilinear + antialias to 32 x 32 first."""
    big = _logits(4, 256)
    small = F.interpolate(torch.as_tensor(big)[None, None], size=(LOW, LOW), mode="bilinear",
                          align_corners=False, antialias=True)[0, 0].numpy()
    ref = _ref(ref_image_model, pixels, small, POINT, np.array([1]))
    _check(seg, Prompt(points=POINT, mask_logits=big), ref)


def test_refinement_loop_round_trip(seg, ref_image_model, pixels):
    """Click, take the returned low-res logits, click again with them: as Meta's predict loop."""
    (first,) = seg.segment([Prompt(object_id=5, points=POINT)], multimask_output=True, return_logits=True)
    low = first.low_res_logits
    assert low.shape == (LOW, LOW) and low.dtype == np.float32
    assert np.abs(low).max() <= 32.0
    best = int(np.argmax([score for _, score in first.candidates]))
    np.testing.assert_array_equal(low, seg.last_low_res_logits[0, best].numpy())
    assert np.isfinite(low).all()
    second = Prompt(object_id=5, points=TWO, labels=np.array([1, 0]), mask_logits=low)
    ref = _ref(ref_image_model, pixels, low, TWO, np.array([1, 0]))
    _check(seg, second, ref)
    (again,) = seg.segment([second])
    assert again.low_res_logits is None  # only when asked for


@pytest.mark.parametrize(("prompt", "message"), [
    (Prompt(mask=np.ones(HW, bool), mask_logits=np.zeros((LOW, LOW))), "not both"),
    (Prompt(mask_logits=np.full((LOW, LOW), np.nan)), "NaN"),
    (Prompt(mask_logits=np.zeros((2, LOW, LOW))), "shape"),
    (Prompt(mask_logits=np.zeros((0, 5))), "non-empty"),
    (Prompt(mask_logits=np.zeros((2048, 8))), "exceeds"),
    (Prompt(mask_logits="abc"), "numeric"),
])
def test_bad_logits_are_refused(seg, prompt, message):
    with pytest.raises(InvalidInputError, match=message):
        seg.segment([prompt])


def test_tracker_refuses_logits_with_a_reason(micro_model, scene):
    trk = Tracker(micro_model)
    with pytest.raises(InvalidInputError, match="binary mask"):
        trk.step(scene, [Prompt(object_id=1, mask_logits=_logits(5))])
    assert trk.object_ids == []
