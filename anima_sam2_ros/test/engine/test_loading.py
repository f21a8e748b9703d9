"""load_model and the registry, on real (tiny) networks written to temporary directories."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from anima_sam2_ros.engine import ModelLoadError, Prompt, Segmenter, load_model, model_names
from anima_sam2_ros.engine.registry import build_config, resolve

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _Pickled:
    """Any class that an unrestricted unpickler would instantiate."""


def _copy_dir(src, dst):
    shutil.copytree(src, dst)
    return str(dst)


# ------------------------------------------------------------------------------------ registry
@pytest.mark.parametrize(("name", "params"), [
    # Parameter counts of Meta's SAM 2.1 checkpoints: 38.9M, 46.0M, 80.8M, 224.4M.
    ("sam2.1-hiera-tiny", 38_962_498),
    ("sam2.1-hiera-small", 46_060_354),
    ("sam2.1-hiera-base-plus", 80_850_178),
    ("sam2.1-hiera-large", 224_446_642),
])
def test_registry_architectures(name, params):
    from transformers import Sam2VideoModel

    spec, int8 = resolve(name)
    assert not int8 and spec.hf_id == "facebook/" + name
    with torch.device("meta"):
        net = Sam2VideoModel(build_config(spec))
    assert sum(p.numel() for p in net.parameters()) == params
    assert resolve(name + "-int8") == (spec, True)


def test_model_names():
    names = model_names()
    assert "sam2.1-hiera-small" in names and "sam2.1-hiera-small-int8" in names and "test-micro" in names


def test_import_is_light():
    code = ("import sys, anima_sam2_ros.engine as e; e.Prompt; e.InvalidInputError; "
            "heavy = ('torch', 'transformers', 'rclpy', 'torchvision', 'PIL'); "
            "bad = [m for m in heavy if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                   env={**os.environ, "PYTHONPATH": ROOT})


# ------------------------------------------------------------------------------------ sources
def test_dummy_weights_are_seeded_and_flagged(caplog):
    before = torch.get_rng_state()
    with caplog.at_level(logging.WARNING, logger="anima_sam2_ros.engine"):
        a = load_model("test-micro", weights="dummy", device="cpu", seed=5)
    assert torch.equal(before, torch.get_rng_state()), "the caller's RNG must not move"
    assert a.is_dummy and a.weights_source == "dummy" and a.precision == "fp32"
    assert a.image_size == 128 and a.device == torch.device("cpu") and a.dtype == torch.float32
    assert "meaningless" in caplog.text
    b = load_model("test-micro", weights="dummy", device="cpu", seed=5)
    c = load_model("test-micro", weights="dummy", device="cpu", seed=6)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.model.training
    assert all(not p.requires_grad for p in a.model.parameters())


def test_local_dir_round_trip(micro_dir, micro_model):
    state = load_file(os.path.join(micro_dir, "model.safetensors"))
    own = micro_model.model.state_dict()
    assert set(state) == set(own)
    assert all(torch.equal(state[k], own[k]) for k in state)
    assert not micro_model.is_dummy and micro_model.weights_source == os.path.abspath(micro_dir)


def test_single_safetensors_file(micro_dir, micro_model):
    lm = load_model("test-micro", weights=os.path.join(micro_dir, "model.safetensors"), device="cpu")
    own = micro_model.model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in lm.model.state_dict().items())


def test_pytorch_bin_uses_weights_only(micro_dir, micro_model, tmp_path):
    path = tmp_path / "bin"
    path.mkdir()
    shutil.copy(os.path.join(micro_dir, "config.json"), path)
    torch.save(micro_model.model.state_dict(), path / "pytorch_model.bin")
    lm = load_model("test-micro", weights=str(path), device="cpu")
    own = micro_model.model.state_dict()
    assert all(torch.equal(v, own[k]) for k, v in lm.model.state_dict().items())
    # An arbitrary pickled object is refused by weights_only=True.
    torch.save({"x": _Pickled()}, path / "pytorch_model.bin")
    with pytest.raises(ModelLoadError, match="weights_only"):
        load_model("test-micro", weights=str(path), device="cpu")


def test_hf_id_from_local_cache(micro_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--anima--sam2-micro"
    snap = repo / "snapshots" / "0123456789abcdef"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    for fname in ("config.json", "model.safetensors"):
        shutil.copy(os.path.join(micro_dir, fname), snap)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    lm = load_model("test-micro", weights="anima/sam2-micro", device="cpu")
    assert lm.weights_source == "anima/sam2-micro" and not lm.is_dummy


def test_hf_id_missing_names_the_cache_path(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ModelLoadError) as err:
        load_model("sam2.1-hiera-small", device="cpu")  # weights=None -> registry default id
    msg = str(err.value)
    assert os.path.join(str(tmp_path / "hub"), "models--facebook--sam2.1-hiera-small") in msg
    assert "never downloads" in msg


# ------------------------------------------------------------------------------------ failures
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "sam3-hiera-huge", "weights": "dummy"}, "unknown model name"),
    ({"name": "test-micro", "weights": "dummy", "precision": "fp8"}, "unknown precision"),
    ({"name": "test-micro-int8", "weights": "dummy", "precision": "bf16"}, "contradicts"),
    ({"name": "test-micro", "weights": "dummy", "device": "tpu"}, "device"),
    ({"name": "test-micro", "weights": "/no/such/dir"}, "no such file or directory"),
    ({"name": "test-micro", "weights": None}, "no published weights"),
    ({"name": "test-micro", "weights": 42}, "must be a string"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ModelLoadError, match=message):
        load_model(**kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_cuda_unavailable():
    with pytest.raises(ModelLoadError, match="CUDA is not available"):
        load_model("test-micro", weights="dummy", device="cuda")


def test_garbage_and_truncated_safetensors(micro_dir, tmp_path):
    path = _copy_dir(micro_dir, tmp_path / "bad")
    weights = os.path.join(path, "model.safetensors")
    data = open(weights, "rb").read()
    with open(weights, "wb") as fh:
        fh.write(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="cannot read safetensors"):
        load_model("test-micro", weights=path)
    with open(weights, "wb") as fh:
        fh.write(os.urandom(1000))
    with pytest.raises(ModelLoadError, match="cannot read safetensors"):
        load_model("test-micro", weights=path)


def test_config_problems(micro_dir, tmp_path):
    path = _copy_dir(micro_dir, tmp_path / "cfg")
    cfg = os.path.join(path, "config.json")
    with open(cfg, "w") as fh:
        fh.write("{not json")
    with pytest.raises(ModelLoadError, match="cannot read"):
        load_model("test-micro", weights=path)
    with open(cfg, "w") as fh:
        json.dump({"model_type": "bert"}, fh)
    with pytest.raises(ModelLoadError, match="model_type"):
        load_model("test-micro", weights=path)
    os.remove(cfg)
    # Without config.json (the model card's layout) the name gives the architecture; strict still.
    assert load_model("test-micro", weights=path).can_track
    with pytest.raises(ModelLoadError, match="missing tensors|shapes do not match"):
        load_model("sam2.1-hiera-tiny", weights=path)
    os.remove(os.path.join(path, "model.safetensors"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model("test-micro", weights=path)
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(os.path.join(micro_dir, "config.json"), empty)
    with pytest.raises(ModelLoadError, match="no weights"):
        load_model("test-micro", weights=str(empty))


def test_wrong_architecture(micro_dir):
    with pytest.raises(ModelLoadError, match="not a sam2.1-hiera-tiny checkpoint.*embed_dim_per_stage"):
        load_model("sam2.1-hiera-tiny", weights=micro_dir)


def test_missing_extra_misshapen_and_nan_tensors(micro_dir, tmp_path):
    path = _copy_dir(micro_dir, tmp_path / "t")
    weights = os.path.join(path, "model.safetensors")
    good = load_file(weights)
    key = "mask_decoder.iou_token.weight"

    def write(state):
        save_file(state, weights)

    write({k: v for k, v in good.items() if k != key})
    with pytest.raises(ModelLoadError, match="1 missing tensors"):
        load_model("test-micro", weights=path)
    write({**good, "extra.weight": torch.zeros(3)})
    with pytest.raises(ModelLoadError, match="1 unexpected tensors"):
        load_model("test-micro", weights=path)
    write({**good, key: torch.zeros(1, 7)})
    with pytest.raises(ModelLoadError, match="shapes do not match"):
        load_model("test-micro", weights=path)
    write({**good, key: torch.full_like(good[key], float("nan"))})
    with pytest.raises(ModelLoadError, match="non-finite"):
        load_model("test-micro", weights=path)


# ------------------------------------------------------------------------------------ precision
def test_int8_precision_quantizes_linear_layers(micro_dir, scene):
    lm = load_model("test-micro", weights=micro_dir, precision="int8", device="cpu")
    assert lm.precision == "int8" and lm.name == "test-micro-int8" and lm.dtype == torch.float32
    weight = lm.model.mask_decoder.iou_prediction_head.proj_in.weight
    assert type(weight).__name__ == "Int8Tensor"
    res = Segmenter(lm).segment_image(scene, [Prompt(box=np.array([12.0, 18.0, 62.0, 52.0]))])
    assert res[0].mask.shape == scene.shape[:2] and np.isfinite(res[0].score)
    assert load_model("test-micro-int8", weights=micro_dir, device="cpu").precision == "int8"


def test_cpu_int8_dot_flags_from_cpuinfo(tmp_path):
    from anima_sam2_ros.engine.loading import cpu_int8_dot_flags

    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n\n"
                   "processor\t: 1\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n")
    assert cpu_int8_dot_flags(str(x86)) == {"avx512_vnni"}
    old = tmp_path / "old"
    old.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n")
    assert cpu_int8_dot_flags(str(old)) == set()
    arm = tmp_path / "arm"  # Jetson Orin's CPU: not measured, so no fast-int8 flag counts
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimdrdm "
                   "lrcpc dcpop asimddp uscat ilrcpc flagm\n")
    assert cpu_int8_dot_flags(str(arm)) == set()
    assert cpu_int8_dot_flags(str(tmp_path / "missing")) is None


@pytest.mark.parametrize("flags, warned", [(set(), True), (None, True), ({"avx512_vnni"}, False)])
def test_int8_on_cpu_warns_only_without_int8_dot_instructions(flags, warned, caplog):
    from anima_sam2_ros.engine.loading import warn_int8_on_cpu

    with caplog.at_level(logging.INFO, logger="anima_sam2_ros.engine"):
        warn_int8_on_cpu(flags)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert bool(warnings) == warned
    if warned:
        assert "SLOWER than fp32" in warnings[0].getMessage()
    else:
        assert "avx512_vnni" in caplog.text


def test_int8_artifact_is_delegated(micro_dir, micro_model, tmp_path, scene):
    from anima_sam2_ros.quant import export as artifact

    quantized = load_model("test-micro", weights=micro_dir, precision="int8", device="cpu")
    out = artifact.export_int8_artifact(quantized, tmp_path / "int8")
    assert os.path.isfile(os.path.join(out, "quantization.json"))
    lm = load_model("test-micro", weights=str(out), device="cpu")
    assert lm.precision == "int8" and not lm.is_dummy
    prompt = [Prompt(box=np.array([12.0, 18.0, 62.0, 52.0]))]
    a = Segmenter(lm).segment_image(scene, prompt)[0]
    b = Segmenter(quantized).segment_image(scene, prompt)[0]
    assert a.score == pytest.approx(b.score, abs=1e-4)
    with pytest.raises(ModelLoadError, match="not a sam2.1-hiera-tiny"):
        load_model("sam2.1-hiera-tiny-int8", weights=str(out), device="cpu")


def test_autocast_and_release():
    lm = load_model("test-micro", weights="dummy", precision="fp16", device="cpu")
    assert lm.dtype == torch.float16
    with lm.autocast():
        assert torch.is_inference_mode_enabled()
        assert torch.is_autocast_enabled("cpu")
        y = lm.model.mask_decoder.iou_prediction_head.proj_in(torch.randn(2, 128))
    assert y.dtype == torch.float16
    lm.release()
    assert lm.model is None
    with pytest.raises(Exception, match="released"):
        Segmenter(lm).set_image(np.zeros((4, 4, 3), np.uint8))


def test_micro_runs_video_end_to_end(micro_model, scene):
    """test-micro is a complete Sam2VideoModel: transformers' own streaming session tracks with it."""
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from anima_sam2_ros.engine.preprocess import preprocess_image

    net = micro_model.model
    assert net.config.memory_encoder_output_channels == 64  # transformers' hard-coded kv_in_dim
    session = Sam2VideoInferenceSession(video_height=scene.shape[0], video_width=scene.shape[1],
                                        dtype=torch.float32)
    obj_idx = session.obj_id_to_idx(1)
    session.add_point_inputs(obj_idx, 0, {"point_coords": torch.tensor([[[[40.0, 45.0]]]]),
                                          "point_labels": torch.tensor([[[1]]], dtype=torch.int32)})
    session.obj_with_new_inputs = [1]
    for t in range(9):  # more frames than the 7 memory slots
        frame = np.roll(scene, 2 * t, axis=1)
        out = net(inference_session=session, frame=preprocess_image(frame, 128, "cpu")[0])
        assert out.pred_masks.shape == (1, 1, 32, 32) and torch.isfinite(out.pred_masks).all()
    assert len(session.output_dict_per_obj[obj_idx]["non_cond_frame_outputs"]) == 8
