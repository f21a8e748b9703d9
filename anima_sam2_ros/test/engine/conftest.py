"""Shared fixtures of the engine tests: real (tiny) torch networks saved to and loaded from disk.

``test-micro`` with transformers' default initialisation produces logits of ~1e-4 (every IoU
prediction ~0.5), which would make any comparison meaningless. ``randomize_`` re-draws every
tensor with unit-scale statistics (weights ~ N(0, 1/fan_in), norms ~ 1 +- 0.1) so the decoder
produces logits of order 1..10 and masks with real structure; the weights then go through
``save_pretrained`` + ``load_model(weights=dir)`` so every test exercises the real loader.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

# Tiny tensors on 2 shared cores: thread hand-offs cost more than they give.
torch.set_num_threads(1)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite all floating tensors of ``module`` with seeded unit-scale random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.state_dict(keep_vars=True).items()):
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if tensor.dim() >= 2:
                fan_in = int(np.prod(tensor.shape[1:])) if "positional_embedding" not in name else 1
                std = 1.0 / math.sqrt(max(1, fan_in))
                new = torch.randn(tensor.shape, generator=gen) * std
            elif leaf == "weight":  # norm layers
                new = 1.0 + 0.1 * torch.randn(tensor.shape, generator=gen)
            else:
                new = 0.05 * torch.randn(tensor.shape, generator=gen)
            tensor.copy_(new.to(tensor.dtype))
    return module


def sam2_image_model_from(video_model):
    """Return a transformers ``Sam2Model`` (image-only) holding the same weights as a ``Sam2VideoModel``."""
    from transformers import Sam2Config, Sam2Model

    vc = video_model.config

    def sub(cfg):
        data = cfg.to_dict()
        data.pop("model_type", None)
        return data

    config = Sam2Config(vision_config=vc.vision_config.to_dict(),
                        prompt_encoder_config=sub(vc.prompt_encoder_config),
                        mask_decoder_config=sub(vc.mask_decoder_config))
    ref = Sam2Model(config).eval()
    missing, _unexpected = ref.load_state_dict(video_model.state_dict(), strict=False)
    assert not missing, missing
    return ref


@pytest.fixture(scope="session")
def micro_dir(tmp_path_factory):
    """A Hugging Face-format directory with randomized test-micro weights."""
    from anima_sam2_ros.engine import load_model

    base = load_model("test-micro", weights="dummy", device="cpu")
    randomize_(base.model, seed=1234)
    path = tmp_path_factory.mktemp("micro")
    base.model.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="session")
def micro_model(micro_dir):
    """``LoadedModel`` of the randomized test-micro weights (fp32, CPU)."""
    from anima_sam2_ros.engine import load_model

    return load_model("test-micro", weights=micro_dir, device="cpu")


@pytest.fixture(scope="session")
def ref_image_model(micro_model):
    """A transformers ``Sam2Model`` with the same weights as ``micro_model``."""
    return sam2_image_model_from(micro_model.model)


@pytest.fixture(scope="session")
def scene():
    """A 90x120 RGB test image with a few flat shapes on a gradient."""
    height, width = 90, 120
    yy, xx = np.mgrid[0:height, 0:width]
    img = np.zeros((height, width, 3), np.uint8)
    img[..., 0] = (xx * 2).astype(np.uint8)
    img[..., 1] = (yy * 2).astype(np.uint8)
    img[..., 2] = 40
    img[20:50, 15:60] = (230, 30, 30)
    img[55:85, 70:110] = (20, 200, 60)
    circle = (yy - 30) ** 2 + (xx - 90) ** 2 < 15 ** 2
    img[circle] = (250, 250, 20)
    return img
