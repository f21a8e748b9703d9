"""Segmenter against transformers' ``Sam2Model`` holding the same weights, plus behaviour checks.

Tolerance: both sides run the same float32 CPU kernels on the same preprocessed pixels; the image
encoder is bit-identical, and the decoders differ only in the batch layout (our prompts go along
the batch axis, ``Sam2Model``'s along the point-batch axis) and in the order of the sparse tokens
(box corners before points, as Meta does; transformers puts them after). Attention over tokens is
permutation-equivariant, so only float32 rounding remains: ~1e-6 relative on logits of order 10.
We allow 1e-4 absolute + 1e-4 relative.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anima_sam2_ros.engine import InvalidInputError, ObjectResult, Prompt, Segmenter
from anima_sam2_ros.engine.preprocess import mask_prompt_to_lowres, preprocess_image, scale_points
from anima_sam2_ros.engine.segmenter import prompt_tokens
from anima_sam2_ros.engine.validation import validate_prompt

ATOL = 1e-4
RTOL = 1e-4
HW = (90, 120)


@pytest.fixture()
def seg(micro_model, scene):
    s = Segmenter(micro_model)
    s.set_image(scene)
    return s


@pytest.fixture(scope="module")
def pixels(scene, micro_model):
    return preprocess_image(scene, micro_model.image_size, "cpu")


def _ours(seg, prompts, multimask):
    checked = [validate_prompt(p, HW) for p in prompts]
    return seg.predict_logits(checked, multimask_output=multimask)


def _pts(points):
    return torch.tensor(np.stack([scale_points(p, HW, 128) for p in points]))[None]


def _boxes(boxes):
    scaled = [scale_points(np.reshape(b, (2, 2)), HW, 128).reshape(4) for b in boxes]
    return torch.tensor(np.stack(scaled))[None]


def _check(ours, ref_out):
    logits, iou, obj = ours
    ref_logits = ref_out.pred_masks[0]
    assert logits.abs().max() > 1.0, "weights too small for a meaningful comparison"
    torch.testing.assert_close(logits, ref_logits, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(iou, ref_out.iou_scores[0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(obj, ref_out.object_score_logits[0, :, 0], atol=ATOL, rtol=RTOL)


POINTS = [np.array([[30.0, 35.0]]), np.array([[90.0, 70.0]]), np.array([[88.5, 29.0]])]
LABELS = [np.array([1]), np.array([1]), np.array([1])]
POINTS2 = [np.array([[30.0, 35.0], [100.0, 10.0]]), np.array([[90.0, 70.0], [20.0, 80.0]])]
LABELS2 = [np.array([1, 0]), np.array([1, 1])]
BOXES = [np.array([12.0, 18.0, 62.0, 52.0]), np.array([68.0, 52.0, 112.0, 88.0])]


@pytest.mark.parametrize("multimask", [False, True])
def test_points_match_sam2model(seg, ref_image_model, pixels, multimask):
    prompts = [Prompt(points=p, labels=lab) for p, lab in zip(POINTS, LABELS, strict=True)]
    ours = _ours(seg, prompts, multimask)
    with torch.inference_mode():
        ref = ref_image_model(pixel_values=pixels, input_points=_pts(POINTS),
                              input_labels=torch.tensor(np.stack(LABELS))[None], multimask_output=multimask)
    assert ours[0].shape == (3, 3 if multimask else 1, 32, 32)
    _check(ours, ref)


@pytest.mark.parametrize("multimask", [False, True])
def test_two_points_with_background_match_sam2model(seg, ref_image_model, pixels, multimask):
    prompts = [Prompt(points=p, labels=lab) for p, lab in zip(POINTS2, LABELS2, strict=True)]
    ours = _ours(seg, prompts, multimask)
    with torch.inference_mode():
        ref = ref_image_model(pixel_values=pixels, input_points=_pts(POINTS2),
                              input_labels=torch.tensor(np.stack(LABELS2))[None], multimask_output=multimask)
    _check(ours, ref)


@pytest.mark.parametrize("multimask", [False, True])
def test_boxes_match_sam2model(seg, ref_image_model, pixels, multimask):
    ours = _ours(seg, [Prompt(box=b) for b in BOXES], multimask)
    with torch.inference_mode():
        ref = ref_image_model(pixel_values=pixels, input_boxes=_boxes(BOXES), multimask_output=multimask)
    _check(ours, ref)


@pytest.mark.parametrize("multimask", [False, True])
def test_points_and_box_match_sam2model(seg, ref_image_model, pixels, multimask):
    prompts = [Prompt(points=p, labels=lab, box=b) for p, lab, b in zip(POINTS2, LABELS2, BOXES, strict=True)]
    ours = _ours(seg, prompts, multimask)
    with torch.inference_mode():
        ref = ref_image_model(pixel_values=pixels, input_points=_pts(POINTS2),
                              input_labels=torch.tensor(np.stack(LABELS2))[None],
                              input_boxes=_boxes(BOXES), multimask_output=multimask)
    _check(ours, ref)


def test_point_and_mask_match_sam2model(seg, ref_image_model, pixels):
    mask = np.zeros(HW, bool)
    mask[20:50, 15:60] = True
    ours = _ours(seg, [Prompt(points=POINTS[0], labels=LABELS[0], mask=mask)], False)
    low = mask_prompt_to_lowres(mask, 128, "cpu")
    with torch.inference_mode():
        ref = ref_image_model(pixel_values=pixels, input_points=_pts(POINTS[:1]),
                              input_labels=torch.tensor(LABELS[0])[None, None], input_masks=low,
                              multimask_output=False)
    _check(ours, ref)


def test_mask_only_prompt_uses_zero_sparse_tokens(seg, ref_image_model, pixels):
    """Meta's behaviour: no sparse token at all (transformers' Sam2Model would add a pad token)."""
    mask = np.zeros(HW, bool)
    mask[55:85, 70:110] = True
    prompt = validate_prompt(Prompt(mask=mask), HW)
    coords, labels = prompt_tokens(prompt, HW, 128)
    assert coords.shape == (0, 2) and labels.shape == (0,)
    logits, iou, obj = seg.predict_logits([prompt], multimask_output=False)
    low = mask_prompt_to_lowres(mask, 128, "cpu")
    with torch.inference_mode():
        emb = ref_image_model.get_image_embeddings(pixels)
        dense = ref_image_model.prompt_encoder.mask_embed(low)
        sparse = torch.zeros(1, 1, 0, dense.shape[1])
        pe = ref_image_model.get_image_wide_positional_embeddings()
        ref_logits, ref_iou, _, ref_obj = ref_image_model.mask_decoder(
            image_embeddings=emb[-1], image_positional_embeddings=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=False, high_resolution_features=emb[:-1])
        padded = ref_image_model(pixel_values=pixels, input_masks=low, multimask_output=False)
    torch.testing.assert_close(logits, ref_logits[:, 0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(iou, ref_iou[:, 0], atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(obj, ref_obj[:, 0, 0], atol=ATOL, rtol=RTOL)
    # transformers' padded mask-only path differs by design.
    assert (padded.pred_masks[0] - logits).abs().max() > 1e-3


def test_extra_padding_tokens_change_results(seg):
    """Why prompts are grouped by token count: padding a prompt with more label -1 tokens changes it."""
    lm = seg.model
    net = lm.model
    prompt = validate_prompt(Prompt(points=POINTS[0], labels=LABELS[0]), HW)
    coords, labels = prompt_tokens(prompt, HW, 128)
    base = seg.predict_logits([prompt])[0]
    with lm.autocast():
        c = torch.from_numpy(np.concatenate([coords, np.zeros((2, 2), np.float32)]))[None, None]
        lab = torch.from_numpy(np.concatenate([labels, [-1, -1]]))[None, None]
        sparse = net.prompt_encoder._embed_points(c, lab, pad=False)
        emb = seg._features
        dense = net.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, 8, 8)
        padded = net.mask_decoder(image_embeddings=emb[-1], image_positional_embeddings=seg._image_pe,
                                  sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                  multimask_output=False, high_resolution_features=emb[:2])[0][:, 0]
    assert (padded - base).abs().max() > 1e-3


def _mixed_prompts():
    mask = np.zeros(HW, np.uint8)
    mask[55:85, 70:110] = 1
    return [
        Prompt(object_id=7, points=POINTS[0], labels=LABELS[0]),
        Prompt(object_id=3, box=BOXES[1]),
        Prompt(object_id=9, mask=mask),
        Prompt(object_id=4, points=POINTS2[1], labels=LABELS2[1], box=BOXES[1]),
        Prompt(object_id=5, points=POINTS[2], labels=LABELS[2]),
        Prompt(object_id=6, points=POINTS[1], labels=LABELS[1], mask=mask),
    ]


@pytest.mark.parametrize("multimask", [False, True])
def test_batched_equals_one_by_one(seg, multimask):
    prompts = _mixed_prompts()
    batched = seg.segment(prompts, multimask_output=multimask)
    assert [r.object_id for r in batched] == [p.object_id for p in prompts]
    for prompt, res in zip(prompts, batched, strict=True):
        (single,) = seg.segment([prompt], multimask_output=multimask)
        assert np.array_equal(single.mask, res.mask)
        assert single.score == pytest.approx(res.score, abs=1e-5)
        assert single.object_score == pytest.approx(res.object_score, abs=1e-5)
        assert single.bbox == res.bbox and single.area == res.area
        assert len(res.candidates) == (3 if multimask else 0)


def test_results_are_consistent(seg, ref_image_model, pixels):
    results = seg.segment(_mixed_prompts(), multimask_output=True)
    for res in results:
        assert isinstance(res, ObjectResult)
        assert res.mask.shape == HW and res.mask.dtype == np.bool_
        assert res.area == int(res.mask.sum())
        if res.area:
            ys, xs = np.nonzero(res.mask)
            assert res.bbox == (xs.min(), ys.min(), xs.max(), ys.max())
        else:
            assert res.bbox == (0, 0, -1, -1)
        scores = [s for _, s in res.candidates]
        assert res.score == pytest.approx(max(scores))
        assert any(np.array_equal(m, res.mask) for m, _ in res.candidates)
        assert 0.0 <= res.object_score <= 1.0
        assert res.visible == (res.object_score > 0.5 and res.area > 0)
    low = seg.last_low_res_logits
    assert low.shape == (6, 3, 32, 32) and low.abs().max() <= 32.0
    # Masks are the reference logits upsampled straight to the source size, thresholded at 0.
    nonempty = 0
    for box in BOXES:
        with torch.inference_mode():
            ref = ref_image_model(pixel_values=pixels, input_boxes=_boxes([box]), multimask_output=False)
            up = F.interpolate(ref.pred_masks[0], size=HW, mode="bilinear", align_corners=False)[0, 0]
        (res,) = seg.segment([Prompt(box=box)])
        sure = up.abs() > 1e-3
        assert np.array_equal(res.mask[sure.numpy()], (up > 0)[sure].numpy())
        nonempty += int(res.mask.any())
    assert nonempty


def test_encodings_and_sizes(micro_model, scene):
    seg = Segmenter(micro_model)
    prompt = [Prompt(points=POINTS[0], labels=LABELS[0])]
    ref = seg.segment_image(scene, prompt)[0]
    bgr = seg.segment_image(np.ascontiguousarray(scene[..., ::-1]), prompt, encoding="bgr8")[0]
    assert np.array_equal(ref.mask, bgr.mask) and ref.score == bgr.score
    mono = scene.mean(axis=2).astype(np.uint8)
    out = seg.segment_image(mono, prompt, encoding="mono8")[0]
    assert out.mask.shape == HW
    assert seg.image_shape == HW
    for hw in [(1, 1), (17, 300), (480, 640)]:
        img = np.full((*hw, 3), 128, np.uint8)
        centre = Prompt(points=np.array([[hw[1] / 2, hw[0] / 2]]), labels=np.array([1]))
        res = seg.segment_image(img, [centre])
        assert res[0].mask.shape == hw
    # non-contiguous input is accepted
    res = seg.segment_image(scene[::2, ::2], [Prompt(box=np.array([1.0, 1.0, 40.0, 30.0]))])
    assert res[0].mask.shape == (45, 60)


def test_segment_requires_image_and_handles_empty(micro_model):
    seg = Segmenter(micro_model)
    assert seg.image_shape is None
    with pytest.raises(InvalidInputError, match="set_image"):
        seg.segment([Prompt(points=np.array([[1.0, 1.0]]), labels=np.array([1]))])
    seg.set_image(np.zeros((10, 10, 3), np.uint8))
    assert seg.segment([]) == []


def test_load_classmethod(micro_dir):
    seg = Segmenter.load("test-micro", weights=micro_dir, device="cpu")
    res = seg.segment_image(np.zeros((20, 20, 3), np.uint8), [Prompt(box=np.array([2.0, 2.0, 10.0, 10.0]))])
    assert res[0].mask.shape == (20, 20)


BAD_PROMPTS = [
    (Prompt(), "no points, box or mask"),
    (Prompt(points=np.array([1.0, 2.0]), labels=np.array([1])), r"shape \(N, 2\)"),
    (Prompt(points=np.zeros((0, 2)), labels=np.zeros(0)), r"shape \(N, 2\)"),
    (Prompt(points=np.array([[np.nan, 2.0]]), labels=np.array([1])), "NaN"),
    (Prompt(points=np.array([[121.0, 2.0]]), labels=np.array([1])), "outside"),
    (Prompt(points=np.array([[-0.5, 2.0]]), labels=np.array([1])), "outside"),
    (Prompt(points=np.array([[1.0, 2.0]]), labels=np.array([1, 1])), "2 labels for 1 points"),
    (Prompt(points=np.array([[1.0, 2.0]]), labels=np.array([2])), "label 2 is not allowed"),
    (Prompt(points=np.array([[1.0, 2.0]]), labels=np.array([-1])), "label -1 is not allowed"),
    (Prompt(labels=np.array([1]), box=np.array([1.0, 2.0, 5.0, 8.0])), "labels given without points"),
    (Prompt(box=np.array([1.0, 2.0, 3.0])), "4 values"),
    (Prompt(box=np.array([10.0, 2.0, 5.0, 8.0])), "x_min < x_max"),
    (Prompt(box=np.array([1.0, 2.0, 5.0, 2.0])), "y_min < y_max"),
    (Prompt(box=np.array([1.0, 2.0, np.inf, 8.0])), "NaN or infinite"),
    (Prompt(box=np.array([130.0, 2.0, 150.0, 8.0])), "entirely outside"),
    (Prompt(mask=np.ones((10, 10), bool)), "differs from the image size"),
    (Prompt(mask=np.zeros(HW, bool)), "empty"),
    (Prompt(object_id=-1, box=np.array([1.0, 2.0, 5.0, 8.0])), "object_id"),
    ("not a prompt", "must be a Prompt"),
]


@pytest.mark.parametrize(("prompt", "message"), BAD_PROMPTS)
def test_bad_prompts_raise(seg, prompt, message):
    with pytest.raises(InvalidInputError, match=message):
        seg.segment([Prompt(points=POINTS[0], labels=LABELS[0]), prompt])


def test_border_points_and_partial_box_are_accepted(seg):
    res = seg.segment([Prompt(points=np.array([[0.0, 0.0], [120.0, 90.0]]), labels=np.array([1, 0])),
                       Prompt(box=np.array([-20.0, -10.0, 50.0, 200.0]))])
    assert len(res) == 2
    clipped = validate_prompt(Prompt(box=np.array([-20.0, -10.0, 50.0, 200.0])), HW)
    np.testing.assert_array_equal(clipped.box, [0, 0, 50, 90])


@pytest.mark.parametrize("image", [
    np.zeros((10, 10, 3), np.float32), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 10, 2), np.uint8),
    np.zeros((2, 10, 10, 3), np.uint8), np.zeros((8193, 2), np.uint8), [[1, 2], [3, 4]],
])
def test_bad_images_raise(micro_model, image):
    with pytest.raises(InvalidInputError):
        Segmenter(micro_model).set_image(image)


def test_bf16_autocast_runs(micro_dir, scene):
    from anima_sam2_ros.engine import load_model

    lm = load_model("test-micro", weights=micro_dir, precision="bf16", device="cpu")
    assert lm.dtype == torch.bfloat16
    res = Segmenter(lm).segment_image(scene, [Prompt(box=BOXES[0])])
    assert res[0].mask.shape == HW and np.isfinite(res[0].score)


def test_chunked_decoding_and_upsampling_give_the_same_results(micro_model, scene, monkeypatch):
    from anima_sam2_ros.engine import segmenter as module

    prompts = _mixed_prompts() + [Prompt(object_id=20 + i, points=p, labels=lab)
                                  for i, (p, lab) in enumerate(zip(POINTS, LABELS, strict=True))]
    whole = Segmenter(micro_model, decoder_batch=len(prompts))
    whole = whole.segment_image(scene, prompts, multimask_output=True)
    monkeypatch.setattr(module, "UPSAMPLE_CHUNK_BYTES", 1)
    chunked = Segmenter(micro_model, decoder_batch=1).segment_image(scene, prompts, multimask_output=True)
    for a, b in zip(whole, chunked, strict=True):
        assert a.object_id == b.object_id and np.array_equal(a.mask, b.mask)
        assert a.score == pytest.approx(b.score, abs=1e-5) and a.bbox == b.bbox


def test_decoder_batch_defaults_by_device_and_rejects_nonsense(micro_model):
    from anima_sam2_ros.engine import segmenter as module

    assert micro_model.device.type == "cpu"
    assert Segmenter(micro_model).decoder_batch == module.CPU_DECODER_BATCH
    for bad in (0, -3, 2.5, True, "8"):
        with pytest.raises(InvalidInputError, match="decoder_batch"):
            Segmenter(micro_model, decoder_batch=bad)


def test_mask_threshold_binarises_the_upsampled_logits(micro_model, scene):
    """Masks are upsample(logits) > mask_threshold; a higher threshold never grows a mask."""
    from anima_sam2_ros.engine.preprocess import upsample_logits

    prompt = Prompt(points=np.array([[60.0, 45.0]]), labels=np.array([1]))
    areas = []
    for threshold in (-2.0, 0.0, 2.0):
        seg = Segmenter(micro_model, mask_threshold=threshold)
        seg.set_image(scene)
        (res,) = seg.segment([prompt])
        logits = upsample_logits(seg.last_low_res_logits[:1, :1].float(), HW)[0, 0]
        assert np.array_equal(res.mask, (logits > threshold).numpy())
        areas.append(res.area)
    assert areas[0] >= areas[1] >= areas[2]
    assert areas[0] > areas[2], "thresholds of -2 and +2 gave the same masks: logits too flat"
    with pytest.raises(InvalidInputError):
        Segmenter(micro_model, mask_threshold=float("nan"))
