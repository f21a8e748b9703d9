"""Plain data the engine takes and returns: numpy arrays and Python numbers, no ROS, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prompt:
    """One object's prompt in source-image pixels.

    Any combination of points (with labels), a box and a mask (or ``mask_logits``); at least one
    must be given. ``object_id`` 0 lets the caller (tracker / node) assign one.

    ``mask_logits`` is Meta's ``mask_input``: the low-res logits of a previous prediction
    (``ObjectResult.low_res_logits``, 256x256 for SAM 2.1), fed back to refine the mask
    (``Segmenter`` only; the tracker takes binary masks, as Meta's video predictor).
    """

    object_id: int = 0
    points: np.ndarray | None = None  # (N, 2) float, x y in source pixels
    labels: np.ndarray | None = None  # (N,) int, 1 foreground, 0 background
    box: np.ndarray | None = None  # (4,) float, x_min y_min x_max y_max in source pixels
    mask: np.ndarray | None = None  # (H, W) bool or uint8 (non-zero = object), source size
    mask_logits: np.ndarray | None = None  # (h, w) float low-res logits (S/4 = 256), or (1, h, w)


@dataclass
class ObjectResult:
    """One object's mask on one frame, at the source image's resolution."""

    object_id: int
    mask: np.ndarray  # (H, W) bool
    score: float  # predicted IoU of the chosen mask
    object_score: float  # presence probability in [0, 1] (sigmoid of the object-score logit)
    visible: bool  # presence logit > 0 and mask not empty
    bbox: tuple[int, int, int, int]  # x_min, y_min, x_max, y_max inclusive; (0, 0, -1, -1) when empty
    area: int  # mask pixel count
    candidates: list[tuple[np.ndarray, float]] = field(default_factory=list)  # multimask: (mask, score) x3
    lost: bool = False  # tracker: no presence for `lost_after` consecutive frames
    lost_frames: int = 0  # tracker: consecutive frames without presence
    event: str = ""  # tracker: "", "added", "reprompted", "lost", "reacquired"
    # Segmenter with return_logits=True: the chosen mask's (S/4, S/4) float32 low-res logits,
    # clamped to +-32 (Meta's convention), ready to send back as Prompt.mask_logits.
    low_res_logits: np.ndarray | None = None
