"""Several cameras on one model (issue 16, part 4, engine): one batched encoder pass, own state.

``step_cameras`` must give every camera what its own ``Tracker.step`` gives on the same frames
(low-res logits within 1e-4: a batched matmul may round differently), whichever cameras are
ready together; a camera's bad frame is its own error only.
"""

from __future__ import annotations

import numpy as np
import pytest

from anima_sam2_ros.engine import InvalidInputError, Prompt, Tracker, load_model, step_cameras


def _scene(camera: int, t: int, h: int = 90, w: int = 120) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (xx * (2 + camera) + 5 * t) % 256
    img[..., 1] = (yy * 2 + 40 * camera) % 256
    img[..., 2] = 30 * camera
    x0 = 10 + 8 * camera + 2 * t
    img[20:55, x0:x0 + 40] = (230, 30 + 60 * camera, 30)
    return img


PROMPTS = {
    0: {0: [Prompt(box=np.array([10.0, 20.0, 50.0, 55.0]), object_id=1),
            Prompt(points=np.array([[100.0, 70.0]]), labels=np.array([1]), object_id=2)]},
    1: {0: [Prompt(points=np.array([[38.0, 36.0], [5.0, 5.0]]), labels=np.array([1, 0]), object_id=7)]},
    2: {2: [Prompt(box=np.array([30.0, 18.0, 75.0, 58.0]), object_id=1)]},  # joins later
}
# Which cameras have a frame ready at each step (the others' frames come later or never).
READY = [[0, 1, 2], [0, 2], [0, 1, 2], [1], [0, 1, 2], [0, 1, 2]]


def _same(a, b):
    """Equal up to the float rounding of a batched matmul (bit-equal on some torch backends only)."""
    assert [r.object_id for r in a] == [r.object_id for r in b]
    for x, y in zip(a, b, strict=True):
        assert float((x.mask == y.mask).mean()) >= 0.999, x.object_id
        assert x.score == pytest.approx(y.score, abs=1e-4)
        assert x.object_score == pytest.approx(y.object_score, abs=1e-4)
        assert (x.event, x.lost) == (y.event, y.lost)


def test_batched_cameras_equal_each_cameras_own_tracker(micro_model):
    together = {c: Tracker(micro_model) for c in range(3)}
    alone = {c: Tracker(micro_model) for c in range(3)}
    t_of = {c: 0 for c in range(3)}
    non_empty = 0
    for ready in READY:
        frames = [(together[c], _scene(c, t_of[c]), PROMPTS[c].get(t_of[c], []), "rgb8")
                  for c in ready]
        batched = step_cameras(frames)
        for c, got in zip(ready, batched, strict=True):
            want = alone[c].step(_scene(c, t_of[c]), PROMPTS[c].get(t_of[c], []))
            _same(got, want)
            if want:
                diff = (together[c].last_low_res_logits - alone[c].last_low_res_logits).abs().max()
                assert float(diff) <= 1e-4, float(diff)
            assert together[c].frame_index == alone[c].frame_index
            non_empty += sum(int(r.mask.any()) for r in got)
            t_of[c] += 1
    assert non_empty > 10  # real masks were compared, not empty ones
    assert [together[c].object_ids for c in range(3)] == [[1, 2], [7], [1]]


def test_a_bad_frame_is_that_cameras_error_only(micro_model):
    a, b = Tracker(micro_model), Tracker(micro_model)
    prompt = [Prompt(box=np.array([10.0, 20.0, 50.0, 55.0]), object_id=1)]
    out = step_cameras([(a, np.zeros((0, 5, 3), np.uint8), prompt, "rgb8"),
                        (b, _scene(1, 0), prompt, "rgb8"),
                        (a, _scene(0, 0), [Prompt(box=np.array([float("nan")] * 4), object_id=3)], "rgb8")])
    assert isinstance(out[0], InvalidInputError) and isinstance(out[2], InvalidInputError)
    assert [r.object_id for r in out[1]] == [1]
    assert a.object_ids == [] and a.frame_index == 0 and b.object_ids == [1]
    assert step_cameras([]) == []
    assert step_cameras([(a, _scene(0, 1), [], "rgb8")]) == [[]]  # no objects: no encoder pass


def test_trackers_of_two_models_cannot_share_a_pass(micro_model, micro_dir):
    other = load_model("test-micro", weights=micro_dir, device="cpu")
    with pytest.raises(InvalidInputError, match="share one loaded model"):
        step_cameras([(Tracker(micro_model), _scene(0, 0), [], "rgb8"),
                      (Tracker(other), _scene(1, 0), [], "rgb8")])


def _from_frame_0(camera, t):
    """Every camera's prompts on frame 0 (so that every camera encodes every frame)."""
    return next(iter(PROMPTS[camera].values())) if t == 0 else []


def test_camera_threads_share_encoder_passes_and_get_their_own_results(micro_model, micro_dir):
    import threading

    from anima_sam2_ros.engine.shared_encoder import SharedEncoder

    shared = SharedEncoder(micro_model, cameras=3, window_s=1.0)  # all three arrive well within it
    threaded = {c: Tracker(micro_model, encoder=shared) for c in range(3)}
    alone = {c: Tracker(micro_model) for c in range(3)}
    rounds = 4
    got = {c: [] for c in range(3)}
    barrier = threading.Barrier(3)
    errors = []

    def camera(c):
        try:
            for t in range(rounds):
                barrier.wait(30)
                got[c].append(threaded[c].step(_scene(c, t), _from_frame_0(c, t)))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=camera, args=(c,)) for c in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors
    assert shared.passes == rounds and shared.frames == 3 * rounds  # one pass per round of 3 frames
    for c in range(3):
        for t in range(rounds):
            _same(got[c][t], alone[c].step(_scene(c, t), _from_frame_0(c, t)))

    lone = SharedEncoder(micro_model, cameras=2, window_s=0.01)  # the other camera never comes
    trk = Tracker(micro_model, encoder=lone)
    assert [r.object_id for r in trk.step(_scene(0, 0), PROMPTS[0][0])] == [1, 2]
    assert (lone.passes, lone.frames) == (1, 1)
    with pytest.raises(InvalidInputError, match="shared encoder"):
        Tracker(load_model("test-micro", weights=micro_dir, device="cpu"), encoder=lone)
    with pytest.raises(InvalidInputError, match="cameras"):
        SharedEncoder(micro_model, cameras=0)
