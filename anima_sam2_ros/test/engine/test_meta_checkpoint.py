"""Meta's own checkpoints (``sam2.1_hiera_*.pt``), checked against Meta's own code (issue 14).

The checkpoint is made by Meta's ``sam2`` 1.1.0 (``scripts/ws.sh`` unpacks it into the venv for
the tests): its ``SAM2Base`` built from its own ``sam2.1_hiera_t.yaml``, every tensor redrawn with
distinct seeded values, saved as ``{"model": state_dict}`` like Meta's downloads. Then

* every tensor of the network equals, value for value, one tensor of the file and every tensor of
  the file is used (found by content, so this check shares nothing with the loader's mapping);
* Meta's video predictor, loading the same file with Meta's loader, and our ``Tracker`` track two
  objects over the same JPEG frames to the same masks;
* another size, SAM 2.0, truncated, foreign and incomplete files are refused, saying why.
"""

from __future__ import annotations

import hashlib
import os
import pickle

import numpy as np
import pytest
import torch

from anima_sam2_ros.engine import ModelLoadError, Prompt, Tracker, load_model

MODEL = "sam2.1-hiera-tiny"
META_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
FRAMES = 4


def _meta():
    try:
        from sam2.build_sam import build_sam2_video_predictor  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"needs Meta's sam2 1.1.0 (scripts/ws.sh test installs it): {exc}")
    import sam2

    return sam2


def _redraw_(state, seed=0):
    """Distinct seeded values in every tensor, at the scale of a trained network."""
    gen = torch.Generator().manual_seed(seed)
    for name, t in state.items():
        if not t.is_floating_point():
            continue
        if t.dim() >= 2:
            fan_in = int(np.prod(t.shape[1:])) if "gaussian" not in name else 1
            new = torch.randn(t.shape, generator=gen) / np.sqrt(max(1, fan_in))
        elif name.endswith("weight") or name.endswith("gamma"):
            new = 1.0 + 0.1 * torch.randn(t.shape, generator=gen)
        else:
            new = 0.05 * torch.randn(t.shape, generator=gen)
        t.copy_(new.to(t.dtype))


@pytest.fixture(scope="module")
def meta_pt(tmp_path_factory):
    """A Meta-format ``sam2.1_hiera_tiny.pt`` written from Meta's own model."""
    _meta()
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=META_CONFIG)
    OmegaConf.resolve(cfg)
    model = instantiate(cfg.model, _recursive_=True)
    state = model.state_dict()
    with torch.no_grad():
        _redraw_(state)
    path = tmp_path_factory.mktemp("meta") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": state}, str(path))
    return path, state


@pytest.fixture(scope="module")
def loaded(meta_pt):
    path, _ = meta_pt
    return load_model(MODEL, weights=str(path), device="cpu")


def _digest(t):
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()


def test_every_tensor_comes_from_exactly_one_tensor_of_the_file(meta_pt, loaded):
    _, meta = meta_pt
    by_content = {}
    for key, t in meta.items():
        by_content.setdefault((_digest(t), tuple(t.shape)), []).append(key)
    assert all(len(v) == 1 for v in by_content.values()), "redrawn tensors must be distinct"
    used = {}
    for name, t in loaded.model.state_dict().items():
        if name == "prompt_encoder.point_embed.weight":  # Meta: one (1, C) tensor per point type
            sources = [by_content[(_digest(t[i:i + 1]), (1, t.shape[1]))][0] for i in range(t.shape[0])]
            assert sources == [f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in range(t.shape[0])]
        else:
            sources = by_content.get((_digest(t), tuple(t.shape)))
            assert sources, f"{name} holds values found in no tensor of the file"
        for src in sources:
            used.setdefault(src, []).append(name)
    assert set(used) == set(meta), sorted(set(meta) - set(used))[:5]
    shared = {src: names for src, names in used.items() if len(names) > 1}
    # Meta shares its prompt encoder's positional matrix with the image-wide encoding.
    assert shared == {"sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix": [
        "shared_image_embedding.positional_embedding",
        "prompt_encoder.shared_embedding.positional_embedding"]}
    assert loaded.can_track and loaded.weights_source == str(meta_pt[0])


def _frames(tmp_path):
    """JPEG frames of a moving scene: what Meta's video predictor reads, decoded here by PIL."""
    from PIL import Image

    h, w = 120, 160
    yy, xx = np.mgrid[0:h, 0:w]
    folder = tmp_path / "frames"
    folder.mkdir()
    decoded = []
    for i in range(FRAMES):
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = (xx + 3 * i) % 256
        img[..., 1] = yy * 2
        img[..., 2] = 60
        img[30 + i:70 + i, 20 + 2 * i:70 + 2 * i] = (230, 40, 30)
        img[((yy - 60) ** 2 + (xx - 120 + i) ** 2) < 18 ** 2] = (30, 220, 60)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg", quality=95)
        decoded.append(np.array(Image.open(folder / f"{i:05d}.jpg").convert("RGB")))
    return folder, decoded


def test_tracking_equals_metas_video_predictor_on_the_same_file(meta_pt, loaded, tmp_path):
    from sam2.build_sam import build_sam2_video_predictor

    path, _ = meta_pt
    folder, frames = _frames(tmp_path)
    predictor = build_sam2_video_predictor(META_CONFIG, ckpt_path=str(path), device="cpu")
    box = np.array([20.0, 30.0, 70.0, 70.0], np.float32)
    point = np.array([[120.0, 60.0]], np.float32)
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(folder))
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=box)
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=2, points=point,
                                        labels=np.array([1], np.int32))
        theirs = {f: (ids, masks.float().numpy()) for f, ids, masks in predictor.propagate_in_video(state)}
    trk = Tracker(loaded)
    prompts = [Prompt(box=box.astype(np.float64), object_id=1),
               Prompt(points=point.astype(np.float64), labels=np.array([1]), object_id=2)]
    for f, frame in enumerate(frames):
        ours = {r.object_id: r for r in trk.step(frame, prompts if f == 0 else [])}
        ids, logits = theirs[f]
        assert list(ids) == [1, 2]
        for k, oid in enumerate(ids):
            meta_logits = logits[k, 0]
            assert ours[oid].mask.shape == meta_logits.shape
            # Equal wherever Meta's logit is not within float noise of the threshold.
            sure = np.abs(meta_logits) > 1e-3
            differ = int((ours[oid].mask != (meta_logits > 0.0))[sure].sum())
            assert differ == 0, (f, oid, differ, int(sure.sum()))
            assert 0 < int(ours[oid].mask.sum()) < ours[oid].mask.size  # not a vacuous agreement


def test_another_size_is_refused_with_its_name(meta_pt):
    path, _ = meta_pt
    with pytest.raises(ModelLoadError, match="is a sam2.1-hiera-tiny checkpoint.*not sam2.1-hiera-small"
                                             ".*load it as model 'sam2.1-hiera-tiny'"):
        load_model("sam2.1-hiera-small", weights=str(path), device="cpu")


class _Foreign:
    """Not a tensor: ``torch.load(weights_only=True)`` must not unpickle it."""


def _write_variant(meta_pt, tmp_path, kind):
    path, state = meta_pt
    out = tmp_path / f"{kind}.pt"
    if kind == "truncated":
        data = path.read_bytes()
        out.write_bytes(data[: len(data) // 3])
    elif kind == "foreign":
        with open(out, "wb") as fh:
            pickle.dump({"model": _Foreign()}, fh)
    elif kind == "other-layout":
        torch.save({"model": {"backbone.layer1.weight": torch.zeros(3)}}, str(out))
    elif kind == "sam2.0":  # SAM 2.0 lacks these two SAM 2.1 tensors
        torch.save({"model": {k: v for k, v in state.items()
                              if not k.startswith(("no_obj_embed_spatial", "obj_ptr_tpos_proj"))}}, str(out))
    elif kind == "missing":
        torch.save({"model": {k: v for k, v in state.items() if k != "sam_mask_decoder.iou_token.weight"}},
                   str(out))
    elif kind == "extra":
        torch.save({"model": {**state, "sam_mask_decoder.extra.weight": torch.zeros(2)}}, str(out))
    elif kind == "misshapen":
        torch.save({"model": {**state, "sam_mask_decoder.iou_token.weight": torch.zeros(1, 7)}}, str(out))
    return out


@pytest.mark.parametrize("kind,message", [
    ("truncated", r"cannot read .*weights_only=True"),
    ("foreign", r"cannot read .*weights_only=True"),
    ("other-layout", r"not a SAM 2 checkpoint in Meta's layout"),
    ("sam2.0", r"SAM 2.0 checkpoint\? this package runs SAM 2.1"),
    ("missing", r"1 network tensors not in the checkpoint \['mask_decoder.iou_token.weight'\]"),
    ("extra", r"1 checkpoint tensors without a place \['sam_mask_decoder.extra.weight'\]"),
    ("misshapen", r"shapes do not match .*iou_token"),
])
def test_bad_meta_files_are_refused(meta_pt, tmp_path, kind, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(MODEL, weights=str(_write_variant(meta_pt, tmp_path, kind)), device="cpu")
    assert os.path.getsize(meta_pt[0]) > 0  # the good file is untouched
