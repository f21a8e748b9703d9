"""Plain data the engine takes and returns: numpy arrays and Python numbers, no ROS, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Prompt:
    """One object's prompt in source-image pixels.

    Any combination of points (with labels), a box and a mask; at least one must be given.
    ``object_id`` 0 lets the caller (tracker / node) assign one.
    """

    object_id: int = 0
    points: np.ndarray | None = None  # (N, 2) float, x y in source pixels
    labels: np.ndarray | None = None  # (N,) int, 1 foreground, 0 background
    box: np.ndarray | None = None  # (4,) float, x_min y_min x_max y_max in source pixels
    mask: np.ndarray | None = None  # (H, W) bool or uint8 (non-zero = object), source size


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
