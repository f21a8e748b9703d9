"""Several cameras on one model: their frames share one batched image-encoder pass.

Each camera has its own ``Tracker`` (its own objects, memory and frame index) on the same
``LoadedModel``; ``step_cameras`` runs one frame of each camera whose frame is ready: every
frame is validated first (``Tracker.prepare``), the image encoder runs once on the batch, then
each tracker finishes its frame on its slice of the features (memory attention, decoder, memory
encoder: per camera, as their objects and memories differ). The results equal each tracker's
own ``step`` on the same frame (within float rounding of the batched encoder: tests), so a camera's masks do
not depend on which other cameras were ready with it.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from .errors import InvalidInputError
from .types import ObjectResult, Prompt

# (tracker, image, prompts, encoding) for one camera.
CameraFrame = Tuple[Any, Any, Optional[Sequence[Prompt]], str]


def step_cameras(frames: Sequence[CameraFrame]) -> List[Any]:
    """One frame per camera; per camera its result list, or the ``InvalidInputError`` it raised.

    A camera whose frame or prompts are invalid gets its error (its tracker is unchanged) and
    does not stop the others. Every tracker must wrap the same ``LoadedModel``.
    """
    if not frames:
        return []
    loaded = frames[0][0]._loaded
    if any(trk._loaded is not loaded for trk, *_ in frames):
        raise InvalidInputError("step_cameras: every tracker must share one loaded model")
    out: List[Any] = [None] * len(frames)
    jobs = []
    for k, (trk, image, prompts, encoding) in enumerate(frames):
        try:
            job = trk.prepare(image, prompts, encoding)
        except InvalidInputError as exc:
            out[k] = exc
            continue
        if job is None:
            out[k] = []
        else:
            jobs.append((k, trk, job))
    if not jobs:
        return out
    import torch

    try:
        with loaded.autocast():
            pixels = torch.cat([trk.pixels(job) for _, trk, job in jobs], dim=0)
            vision = loaded.model.get_image_features(pixels, return_dict=True)
    except BaseException:
        for _, trk, job in jobs:
            trk.abandon(job)
        raise
    for index, (k, trk, job) in enumerate(jobs):
        try:
            results: List[ObjectResult] = trk.finish(job, vision, index)
        except BaseException:
            for _, later, later_job in jobs[index + 1:]:  # (finish undid its own)
                later.abandon(later_job)
            raise
        out[k] = results
    return out
