"""Tracker tests on the real (tiny, randomized) test-micro network; no mocks.

The reference is transformers' own streaming session (``Sam2VideoInferenceSession`` without a
video, frames added one by one through ``Sam2VideoModel.forward(frame=...)``) on the same
weights, the same preprocessed pixels and the same prompts.

Tolerance: everything runs in float32 on the CPU. The tracker batches objects (batch B instead of
the reference's B = 1) and orders some reductions differently, which moves results by float32
rounding (~1e-6). Memory features are stored in bfloat16 on both sides, so such a difference can
occasionally flip one bf16 rounding (relative 2**-8) of a memory feature before it is read back.
Observed over these runs: max |delta| ~2e-5 on logits of order 1..10. We require <= 2e-4 (10x
margin) on low-res logits, source-size logits and object-score logits, and identical binary masks
except where the reference logit lies within 2e-4 of 0. The tolerance is tight enough to catch
real mistakes: shifting pointer temporal offsets by one frame gives ~4e-4, a wrong memory order
~1e-2, dropping pointers too early ~8e-3, Meta vs transformers memory binarisation ~2e-3.
"""

from __future__ import annotations

import contextlib
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anima_sam2_ros.engine.errors import InvalidInputError, UnknownObjectError
from anima_sam2_ros.engine.position_cache import bypass_position_cache
from anima_sam2_ros.engine.preprocess import preprocess_image, preprocess_video_frame, upsample_logits
from anima_sam2_ros.engine.tracker import Tracker
from anima_sam2_ros.engine.types import Prompt

TOL = 2e-4
H, W = 72, 96


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Seeded unit-scale random values for every floating tensor (as test/engine/conftest.py)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            if tensor.dim() >= 2:
                fan_in = int(np.prod(tensor.shape[1:])) if "positional_embedding" not in name else 1
                new = torch.randn(tensor.shape, generator=gen) / np.sqrt(max(1, fan_in))
            elif name.endswith("weight"):
                new = 1.0 + 0.1 * torch.randn(tensor.shape, generator=gen)
            else:
                new = 0.05 * torch.randn(tensor.shape, generator=gen)
            tensor.copy_(new.to(tensor.dtype))
    return module


def trackable(net) -> bool:
    """Whether the network can track (transformers hard-codes the memory key/value width 64)."""
    return net.mem_dim == 64 and net.hidden_dim % 64 == 0


def micro_spec(hidden: int = 128, mem: int = 64):
    """test-micro's architecture with the given neck and memory widths."""
    import dataclasses

    from anima_sam2_ros.engine.registry import resolve

    spec, _ = resolve("test-micro")
    return dataclasses.replace(
        spec,
        vision={**spec.vision, "fpn_hidden_size": hidden},
        prompt_encoder={**spec.prompt_encoder, "hidden_size": hidden},
        mask_decoder={**spec.mask_decoder, "hidden_size": hidden},
        video={**spec.video, "memory_attention_hidden_size": hidden, "memory_encoder_hidden_size": hidden,
               "memory_encoder_output_channels": mem, "mask_downsampler_embed_dim": hidden,
               "memory_fuser_embed_dim": hidden},
    )


def build_loaded(spec):
    from transformers import Sam2VideoModel

    from anima_sam2_ros.engine.loading import LoadedModel
    from anima_sam2_ros.engine.registry import build_config

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Sam2VideoModel(build_config(spec)).eval()
    randomize_(net, seed=1234)
    for param in net.parameters():
        param.requires_grad_(False)
    return LoadedModel(net, name="test-micro", device="cpu", precision="fp32", image_size=spec.image_size,
                       weights_source="test", is_dummy=True)


@pytest.fixture(scope="module")
def micro_model(micro_model):
    """The shared randomized test-micro (conftest), if its memory width can track.

    Otherwise (a registry test-micro with memory width 16) the same micro network with 64 memory
    channels and a 128-wide neck: object pointers then split into 2 memory tokens, as SAM 2.1's
    256/64 split them into 4.
    """
    if trackable(micro_model.model):
        return micro_model
    return build_loaded(micro_spec())


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: thread hand-offs dominate on 2 shared cores; one thread is ~10x faster.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def frame(t: int, seed: int = 0) -> np.ndarray:
    """Noise with a bright square moving right and a dark disc moving down."""
    rng = np.random.default_rng(seed * 1000 + t)
    img = rng.integers(0, 90, size=(H, W, 3), dtype=np.uint8)
    x0 = 8 + (t * 2) % 50
    img[20:40, x0:x0 + 20] = (240, 230, 200)
    yy, xx = np.mgrid[0:H, 0:W]
    cy = 15 + (t * 3) % 40
    img[(yy - cy) ** 2 + (xx - 70) ** 2 < 9 ** 2] = (10, 10, 120)
    return img


def square_center(t: int):
    return 18.0 + (t * 2) % 50, 30.0


def disc_center(t: int):
    return 70.0, 15.0 + (t * 3) % 40


# ---------------------------------------------------------------- transformers reference
class Reference:
    """transformers' streaming session, prompts added the way its processor adds them."""

    def __init__(self, loaded):
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        self.net = loaded.model
        self.size = loaded.image_size
        self.session = Sam2VideoInferenceSession(video_height=H, video_width=W, inference_device="cpu",
                                                 dtype=torch.float32)
        self.frame_idx = 0

    def _scale(self, xy):
        c = torch.tensor(np.asarray(xy, np.float32)).reshape(-1, 2).clone()
        c[:, 0] = c[:, 0] * (self.size / W)
        c[:, 1] = c[:, 1] * (self.size / H)
        return c

    def prompt(self, prompts):
        """Add prompts for the next frame (all objects in one call, as the processor must)."""
        s = self.session
        for p in prompts:
            idx = s.obj_id_to_idx(p.object_id)
            if p.mask is not None:
                from transformers.models.sam2_video.processing_sam2_video import Sam2VideoProcessor

                fake = types.SimpleNamespace(target_size=self.size)
                Sam2VideoProcessor.process_new_mask_for_video_frame(
                    fake, s, self.frame_idx, [p.object_id], [torch.tensor(p.mask, dtype=torch.bool)])
                continue
            coords, labels = [], []
            if p.box is not None:
                coords.append(self._scale(p.box))
                labels.append(torch.tensor([2, 3], dtype=torch.int32))
            if p.points is not None:
                coords.append(self._scale(p.points))
                labels.append(torch.tensor(np.asarray(p.labels), dtype=torch.int32))
            s.add_point_inputs(idx, self.frame_idx, {"point_coords": torch.cat(coords)[None, None],
                                                     "point_labels": torch.cat(labels)[None, None]})
            s.remove_mask_inputs(idx, self.frame_idx)
        s.obj_with_new_inputs = [p.object_id for p in prompts]

    def step(self, pixels):
        # transformers' code path exactly: position encodings recomputed every frame.
        with bypass_position_cache(self.net):
            out = self.net(inference_session=self.session, frame=pixels)
        self.frame_idx += 1
        return out.pred_masks[:, 0], out.object_score_logits.reshape(-1)


def per_object_memory_reference(net, monkeypatch):
    """Patch the network instance so its streaming session follows Meta's SAM 2.1 semantics.

    (The tracker never calls these two methods.) Memory masks binarised per object; mask prompts:
    pointer from the single-mask decoder token, memory from the upsampled low-res logits.
    """
    original_use_mask = type(net)._use_mask_as_output

    def encode_per_object(self, inference_session, frame_idx, objects_needing_memory_encoding,
                          high_res_masks_for_memory, object_score_logits_for_memory,
                          is_mask_from_pts_per_obj):
        for obj_idx, hr, sc, flag in zip(objects_needing_memory_encoding, high_res_masks_for_memory,
                                         object_score_logits_for_memory, is_mask_from_pts_per_obj,
                                         strict=True):
            type(self)._batch_encode_memories(self, inference_session, frame_idx, [obj_idx], [hr], [sc],
                                              [flag])

    def use_mask_meta(self, backbone_features, high_res_features, mask_inputs):
        out = original_use_mask(self, backbone_features, high_res_features, mask_inputs)
        m = mask_inputs.to(backbone_features[0].dtype)
        ptr = self._single_frame_forward(input_masks=self.mask_downsample(m),
                                         image_embeddings=high_res_features + [backbone_features],
                                         multimask_output=False).object_pointer
        lam = torch.any(mask_inputs.flatten(1) > 0, dim=1)[..., None].to(ptr.dtype)
        out.object_pointer = lam * ptr + (1 - lam) * self.no_object_pointer
        out.high_res_masks = F.interpolate(out.pred_masks.float(), size=(self.image_size, self.image_size),
                                           mode="bilinear", align_corners=False)
        return out

    monkeypatch.setattr(net, "_batch_encode_memories", types.MethodType(encode_per_object, net))
    monkeypatch.setattr(net, "_use_mask_as_output", types.MethodType(use_mask_meta, net))


def compare(trk, results, ref_low, ref_logit, label):
    """Tracker outputs vs reference outputs on one frame; returns the max abs logit difference."""
    ours = trk.last_low_res_logits  # (N, h, w)
    assert ours.shape == ref_low.shape, label
    d_low = (ours - ref_low).abs().max().item()
    up_ours = upsample_logits(ours, (H, W))
    up_ref = upsample_logits(ref_low, (H, W))
    d_up = (up_ours - up_ref).abs().max().item()
    ours_logit = torch.tensor([np.log(r.object_score / (1 - r.object_score)) if 0 < r.object_score < 1
                               else np.nan for r in results])
    assert d_low <= TOL and d_up <= TOL, f"{label}: low-res {d_low:.2e}, source-size {d_up:.2e}"
    d_obj = (trk.last_object_score_logits - ref_logit).abs().max().item()
    assert d_obj <= TOL, f"{label}: object-score logits differ by {d_obj:.2e}"
    del ours_logit
    for k, r in enumerate(results):
        ref_mask = (up_ref[k] > 0).numpy()
        ambiguous = (up_ref[k].abs() <= TOL).numpy()
        assert np.array_equal(r.mask[~ambiguous], ref_mask[~ambiguous]), f"{label}: object {r.object_id} mask"
    return max(d_low, d_up, d_obj)


def run_pair(loaded, schedule, n_frames, semantics):
    """Run tracker and reference side by side; ``schedule[t]`` = prompts given on frame t."""
    trk = Tracker(loaded, semantics=semantics)
    ref = Reference(loaded)
    worst = 0.0
    for t in range(n_frames):
        img = frame(t)
        prompts = schedule.get(t)
        if prompts:
            ref.prompt(prompts)
        with torch.inference_mode():  # Meta's video-predictor pixels (PIL bicubic), as the Tracker's
            pixels = preprocess_video_frame(img, loaded.image_size, "cpu")
        ref_low, ref_logit = ref.step(pixels)
        results = trk.step(img, prompts)
        assert [r.object_id for r in results] == ref.session.obj_ids
        worst = max(worst, compare(trk, results, ref_low, ref_logit, f"frame {t}"))
    return trk, ref, worst


def pt(oid, xy, label=1):
    return Prompt(object_id=oid, points=np.array([xy], np.float32), labels=np.array([label]))


def two_point_schedule():
    return {
        0: [pt(1, square_center(0)),
            Prompt(object_id=2, points=np.array([disc_center(0), (5.0, 5.0)], np.float32),
                   labels=np.array([1, 0]))],
        5: [Prompt(object_id=3, box=np.array([60, 5, 85, 30], np.float32))],
        14: [Prompt(object_id=1, box=np.array([30, 18, 60, 42], np.float32),
                    points=np.array([[45, 30]], np.float32), labels=np.array([1]))],
    }


# ---------------------------------------------------------------- 1. equivalence
def test_equivalence_with_transformers_streaming_session(micro_model):
    """Tracker (semantics="transformers") vs the stock streaming session.

    3 objects (two on frame 0, one box on frame 5 while the others are tracked), a box+point
    re-prompt on frame 14, 26 frames: more than the 7-frame memory and the 16 object pointers.
    """
    trk, ref, worst = run_pair(micro_model, two_point_schedule(), 26, "transformers")
    print(f"max |delta| vs transformers: {worst:.2e}")
    assert trk.frame_index == 26


def test_equivalence_meta_semantics_with_mask_prompt(micro_model, monkeypatch):
    """Default semantics vs the reference patched to Meta's semantics.

    Per-object memory binarisation and Meta's mask-prompt handling; a mask prompt added
    mid-stream (while another object is tracked) and a mask re-prompt.
    """
    per_object_memory_reference(micro_model.model, monkeypatch)
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (yy - disc_center(3)[1]) ** 2 + (xx - 70) ** 2 < 10 ** 2
    square = np.zeros((H, W), bool)
    square[20:40, 30:50] = True
    schedule = {
        0: [pt(1, square_center(0))],
        3: [Prompt(object_id=2, mask=disc)],
        9: [Prompt(object_id=1, mask=square)],
    }
    _, _, worst = run_pair(micro_model, schedule, 20, "sam2")
    print(f"max |delta| vs Meta-semantics reference: {worst:.2e}")


def test_stock_mask_prompt_pointer_differs_from_meta(micro_model):
    """Documents a transformers deviation that the default semantics corrects.

    Mask-prompt object pointer: multimask token (transformers) vs single-mask token (Meta).
    """
    net = micro_model.model
    img = frame(0)
    with torch.inference_mode():
        feats = net.get_image_features(preprocess_image(img, micro_model.image_size, "cpu"))
        top = feats.fpn_hidden_states[-1]
        fh, fw = net.backbone_feature_sizes[-1]
        pix = top.permute(1, 2, 0).view(1, -1, fh, fw)
        hr = [x.permute(1, 2, 0).view(1, x.size(2), *s)
              for x, s in zip(feats.fpn_hidden_states[:-1], net.backbone_feature_sizes[:-1], strict=True)]
        mask = torch.zeros(1, 1, micro_model.image_size, micro_model.image_size)
        mask[..., 30:60, 40:90] = 1
        stock = net._use_mask_as_output(pix, hr, mask).object_pointer
        single = net._single_frame_forward(input_masks=net.mask_downsample(mask), image_embeddings=hr + [pix],
                                           multimask_output=False).object_pointer
    assert not torch.allclose(stock.reshape(-1), single.reshape(-1), atol=1e-4)


# ---------------------------------------------------------------- 2./3. bounded state, pruning
def test_bounded_state_and_pruning_window(micro_model):
    trk = Tracker(micro_model)
    trk.step(frame(0), [pt(0, square_center(0)), pt(0, disc_center(0))])
    sizes = {}
    for t in range(1, 200):
        trk.step(frame(t))
        if t in (30, 199):
            sizes[t] = trk.state_nbytes()
    assert sizes[30] == sizes[199] > 0
    held = trk.retained_frames(1)
    assert held["cond"] == [0]
    assert held["memory"] == list(range(199 - 5, 200))  # num_maskmem - 1 = 6 most recent
    assert held["pointers"] == list(range(199 - 14, 200))  # max_object_pointers - 1 = 15 most recent
    # conditioning frames capped (first + most recent) after many re-prompts
    for t in range(200, 300):
        trk.step(frame(t), [pt(1, square_center(t))])
    held = trk.retained_frames(1)
    assert held["cond"] == [0, 299]
    assert trk.state_nbytes() == sizes[199]


def test_pruning_does_not_change_outputs(micro_model):
    """Pruned tracker vs the unpruned reference (which keeps every frame) over 30 frames.

    The equivalence tests check the same frame by frame with several objects.
    """
    trk, ref, _ = run_pair(micro_model, {0: [pt(1, square_center(0))]}, 30, "transformers")
    # the reference holds all 30 frames, the tracker only what memory attention reads
    assert len(ref.session.output_dict_per_obj[0]["non_cond_frame_outputs"]) == 29
    held = trk.retained_frames(1)
    assert held["memory"] == list(range(24, 30)) and held["pointers"] == list(range(15, 30))


# ---------------------------------------------------------------- 4. API behaviour
def test_ids_events_and_errors(micro_model):
    trk = Tracker(micro_model, lost_after=2)
    out = trk.step(frame(0), [pt(0, square_center(0)), pt(7, disc_center(0)), pt(0, (50, 60))])
    assert [r.object_id for r in out] == [1, 7, 8]
    assert all(r.event == "added" for r in out)
    for r in out:
        assert r.mask.shape == (H, W) and r.mask.dtype == np.bool_
        assert r.area == int(r.mask.sum())
        if r.area:
            ys, xs = np.nonzero(r.mask)
            assert r.bbox == (xs.min(), ys.min(), xs.max(), ys.max())
        else:
            assert r.bbox == (0, 0, -1, -1)
    out = trk.step(frame(1), [pt(7, disc_center(1))])
    assert [r.event for r in out] == ["", "reprompted", ""]
    trk.remove_object(8)
    assert trk.object_ids == [1, 7]
    with pytest.raises(UnknownObjectError):
        trk.remove_object(8)
    with pytest.raises(InvalidInputError):
        trk.step(frame(2), [Prompt(object_id=1)])  # nothing given
    with pytest.raises(InvalidInputError):
        trk.step(frame(2), [Prompt(object_id=1, points=np.array([[500.0, 5.0]]))])  # outside
    with pytest.raises(InvalidInputError):
        trk.step(frame(2), [pt(1, (5, 5)), pt(1, (6, 6))])  # twice in one step
    with pytest.raises(InvalidInputError):
        trk.step(frame(2), [Prompt(object_id=3, points=np.array([[5.0, 5.0]]), mask=np.ones((H, W), bool))])
    with pytest.raises(InvalidInputError):
        trk.step(np.zeros((H, W, 3), np.float32))
    assert trk.frame_index == 2 and trk.object_ids == [1, 7]  # failed steps change nothing
    out = trk.step(frame(2), [pt(0, (40, 40))])
    assert out[-1].object_id == 9  # ids are not reused
    trk.reset()
    assert trk.object_ids == [] and trk.frame_index == 0 and trk.state_nbytes() == 0
    assert trk.step(frame(0)) == []


@contextlib.contextmanager
def presence_bias(net, value):
    """Shift the object-score head's output bias (a real weight edit, restored afterwards).

    A large negative value makes every object absent, a large positive one present.
    """
    bias = net.mask_decoder.pred_obj_score_head.proj_out.bias
    old = bias.detach().clone()
    with torch.no_grad():
        bias.add_(value)
    try:
        yield
    finally:
        with torch.no_grad():
            bias.copy_(old)


def test_lost_and_reacquired(micro_model):
    net = micro_model.model
    trk = Tracker(micro_model, lost_after=3)
    with presence_bias(net, 1000.0):
        first = trk.step(frame(0), [pt(1, square_center(0))])[0]
        assert first.visible and first.object_score == 1.0 and not first.lost
    seq = []
    with presence_bias(net, -1000.0):
        for t in range(1, 6):
            seq.append(trk.step(frame(t))[0])
    assert [r.lost_frames for r in seq] == [1, 2, 3, 4, 5]
    assert [r.lost for r in seq] == [False, False, True, True, True]
    assert [r.event for r in seq] == ["", "", "lost", "", ""]
    assert all(not r.visible and r.area == 0 and r.bbox == (0, 0, -1, -1) for r in seq)
    with presence_bias(net, 1000.0):
        back = trk.step(frame(6))[0]
        again = trk.step(frame(7))[0]
    assert back.event == "reacquired" and not back.lost and back.lost_frames == 0
    assert again.event == ""
    # a mask prompt re-conditions the object: the mask is the output, IoU 1, presence from the mask
    mask = np.zeros((H, W), bool)
    mask[20:40, 30:50] = True
    r = trk.step(frame(8), [Prompt(object_id=1, mask=mask)])[0]
    assert r.event == "reprompted" and r.score == 1.0 and r.object_score > 0.99
    assert r.visible and abs(r.area - mask.sum()) <= 0.1 * mask.sum()


def test_untrackable_network_is_refused():
    from anima_sam2_ros.engine.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="memory width"):
        Tracker(build_loaded(micro_spec(hidden=32, mem=16)))


def test_small_windows(micro_model):
    trk = Tracker(micro_model, num_maskmem=3, max_object_pointers=4, max_conditioning_frames=1)
    trk.step(frame(0), [pt(0, square_center(0))])
    for t in range(1, 10):
        trk.step(frame(t), [pt(1, square_center(t))] if t in (4, 7) else None)
    assert trk.retained_frames(1) == {"cond": [7], "memory": [8, 9], "pointers": [8, 9]}


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_autocast(micro_model, precision):
    """bf16 / fp16 autocast (fp32 weights) runs, with bf16 memory mixed in, close to fp32."""
    from anima_sam2_ros.engine.loading import LoadedModel

    half = LoadedModel(micro_model.model, name="test-micro", device="cpu", precision=precision,
                       image_size=micro_model.image_size, weights_source="test", is_dummy=True)
    low, ref = Tracker(half), Tracker(micro_model)
    mask = np.zeros((H, W), bool)
    mask[20:40, 30:50] = True
    for t in range(8):
        prompts = {0: [pt(0, square_center(0))], 3: [Prompt(object_id=0, mask=mask)]}.get(t)
        a, b = low.step(frame(t), prompts), ref.step(frame(t), prompts)
    for x, y in zip(a, b, strict=True):
        assert np.isfinite(x.object_score) and x.mask.shape == (H, W)
        union = (x.mask | y.mask).sum()
        assert union == 0 or (x.mask & y.mask).sum() / union > 0.9


def test_constructor_validation(micro_model):
    with pytest.raises(InvalidInputError):
        Tracker(micro_model, num_maskmem=8)
    with pytest.raises(InvalidInputError):
        Tracker(micro_model, max_conditioning_frames=0)
    with pytest.raises(InvalidInputError):
        Tracker(micro_model, semantics="other")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InvalidInputError, match="object_batch"):
            Tracker(micro_model, object_batch=bad)
    from anima_sam2_ros.engine import tracker as module

    assert Tracker(micro_model).object_batch == module.CPU_OBJECT_BATCH  # a CPU model


def test_object_batch_does_not_change_results(micro_model):
    """Chunked network calls (1 object per call) equal one batch of everything, frame by frame.

    Six point-prompted objects on frame 0 (one prompt group), a box and a mask added while the
    others are tracked, a re-prompt: every batched path (memory attention groups, decoder,
    memory encoder) runs chunked and whole.
    """
    yy, xx = np.mgrid[0:H, 0:W]
    disc = (yy - disc_center(4)[1]) ** 2 + (xx - 70) ** 2 < 10 ** 2
    xs = np.linspace(10, W - 10, 6)
    schedule = {
        0: [pt(i + 1, (float(x), float(H // 2))) for i, x in enumerate(xs)],
        4: [Prompt(object_id=7, box=np.array([60, 5, 85, 30], np.float32)), Prompt(object_id=8, mask=disc)],
        8: [pt(2, square_center(8))],
    }
    whole = Tracker(micro_model, object_batch=64)
    chunked = Tracker(micro_model, object_batch=1)
    for t in range(14):
        a = whole.step(frame(t), schedule.get(t))
        b = chunked.step(frame(t), schedule.get(t))
        assert [r.object_id for r in a] == [r.object_id for r in b]
        torch.testing.assert_close(chunked.last_low_res_logits, whole.last_low_res_logits,
                                   rtol=1e-4, atol=1e-4, msg=f"frame {t}")
        for ra, rb in zip(a, b, strict=True):
            assert np.mean(ra.mask != rb.mask) < 1e-3, f"frame {t}, object {ra.object_id}"
            assert ra.score == pytest.approx(rb.score, abs=1e-4)
    assert chunked.state_nbytes() == whole.state_nbytes()


def test_mask_threshold_changes_outputs_not_memory(micro_model):
    """The threshold applies to returned masks only: logits (memory path) stay the same."""
    runs = {}
    for threshold in (0.0, 3.0):
        trk = Tracker(micro_model, mask_threshold=threshold)
        runs[threshold] = [trk.step(frame(i), [pt(1, square_center(0))] if i == 0 else None)[0]
                           for i in range(3)] + [trk.last_low_res_logits.clone()]
    base, tight = runs[0.0], runs[3.0]
    torch.testing.assert_close(base[-1], tight[-1], rtol=0, atol=0)
    for a, b in zip(base[:-1], tight[:-1], strict=True):
        assert b.area <= a.area and not (b.mask & ~a.mask).any()
    assert sum(a.area for a in base[:-1]) > sum(b.area for b in tight[:-1])
    with pytest.raises(InvalidInputError):
        Tracker(micro_model, mask_threshold=float("inf"))
