"""One camera of ``sam2_node``: its inputs, outputs and worker (several share one model).

Without the ``cameras`` parameter the node has one unnamed stream on ``topics.image`` /
``topics.camera_info`` publishing ``~/masks`` ...; with ``cameras: front,wrist`` one stream per
name, reading ``NAME/image_raw`` and ``NAME/camera_info`` and publishing ``~/NAME/masks`` ...
Each stream's ``Worker`` has its own frame slot, tracker, goals and segment queue; their trackers
share the model and one ``SharedEncoder`` (frames ready together: one image-encoder pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

# The 2D outputs of every stream: key -> topic below the node (``~/`` or ``~/NAME/``).
OUTPUTS = ("masks", "label_image", "overlay", "camera_info", "markers")


@dataclass
class CameraStream:
    """A camera's name, topics, publishers, subscriptions and worker."""

    name: str  # '' for the single-camera default
    image_topic: str
    compressed_topic: str
    camera_info_topic: str
    worker: Any = None
    pubs: Dict[str, Any] = field(default_factory=dict)
    perception: Any = None  # perception.Perception: this camera's detections / clicks / depth

    def output_topic(self, key: str) -> str:
        """``~/masks`` (single camera) or ``~/NAME/masks``."""
        return f"~/{self.name}/{key}" if self.name else f"~/{key}"


def build_streams(names: List[str], topics_image: str, topics_compressed: str,
                  topics_camera_info: str) -> List[CameraStream]:
    """The streams of a configuration (``names`` from ``params.camera_names``)."""
    if not names:
        return [CameraStream("", topics_image, topics_compressed, topics_camera_info)]
    return [CameraStream(n, f"{n}/image_raw", "", f"{n}/camera_info") for n in names]


def pick(streams: List[CameraStream], camera: str) -> tuple[Optional[CameraStream], str]:
    """The stream a request names (``''``: the first), or None and why."""
    if not streams:
        return None, "the node is not configured"
    camera = str(camera or "")
    if not camera:
        return streams[0], ""
    for s in streams:
        if s.name == camera:
            return s, ""
    names = ", ".join(s.name for s in streams if s.name)
    if not names:
        return None, f"unknown camera {camera!r}: this node has one camera (no 'cameras' parameter); send ''"
    return None, f"unknown camera {camera!r}; cameras: {names}"
