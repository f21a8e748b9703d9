"""The node's parameters: one table (name, default, range, description), declared with descriptors.

``PARAMS`` is the single source of truth: ``declare(node)`` declares every entry with a
``ParameterDescriptor`` (description, integer/float range, read-only flag, allowed values in
``additional_constraints``), ``read(node)`` reads them into a ``NodeParams`` dataclass, and
``config/sam2.yaml`` lists exactly these names (a test checks both directions).

Values are read at ``on_configure``; changing a parameter takes effect at the next
configure (cleanup + configure), except those marked read-only, which are fixed at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

PRECISIONS = ("int8", "fp16", "bf16", "fp32")
RELIABILITIES = ("best_effort", "reliable")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: default value (its type is the parameter type), range, description."""

    name: str
    default: Any
    description: str
    min_value: Optional[float] = None
    max_value: Optional[float] = None
    choices: Tuple[str, ...] = ()
    read_only: bool = False


PARAMS: Tuple[ParamSpec, ...] = (
    # --- model
    ParamSpec("model", "sam2.1-hiera-small",
              "Model name: sam2.1-hiera-{tiny,small,base-plus,large} (optional -int8 suffix) or test-micro."),
    ParamSpec("weights", "",
              "Weights: '' = the model's default Hugging Face id from the local cache (never downloaded), "
              "a local directory or .safetensors file, an INT8 artifact directory, an HF id, or 'dummy' "
              "(random weights, tests only)."),
    ParamSpec("precision", "int8", "Inference precision.", choices=PRECISIONS),
    ParamSpec("device", "auto", "Torch device: auto, cpu, cuda or cuda:N."),
    ParamSpec("seed", 0, "Initialisation seed for dummy weights.", 0, 2**31 - 1),
    ParamSpec("autostart", False,
              "Configure and activate on start-up, without a lifecycle manager.", read_only=True),
    # --- camera input
    ParamSpec("topics.image", "image",
              "sensor_msgs/Image input (rgb8, bgr8, mono8); relative names resolve in the node's "
              "namespace. '' disables it."),
    ParamSpec("topics.compressed_image", "",
              "Optional sensor_msgs/CompressedImage input (jpeg/png), e.g. image/compressed; '' = off."),
    ParamSpec("topics.camera_info", "camera_info",
              "sensor_msgs/CameraInfo input, republished on ~/camera_info; '' = off."),
    ParamSpec("cameras", "",
              "Several cameras on one model: comma-separated names, e.g. 'front,wrist' (at most "
              "8). Camera NAME reads NAME/image_raw and NAME/camera_info (relative: remap them), "
              "publishes ~/NAME/masks, ~/NAME/label_image, ~/NAME/overlay, ~/NAME/markers and "
              "~/NAME/camera_info, and has its own tracker, goals and segment queue; frames ready "
              "together share one image-encoder pass. Segment / Track pick one with their 'camera' "
              "field ('' = the first). topics.image / compressed_image / camera_info are not used "
              "then; relative topics.detections / clicked_point / depth are each camera's "
              "(NAME/depth ...; outputs ~/NAME/detections ...), absolute ones the first camera's. "
              "'' = one camera on topics.image."),
    ParamSpec("image_qos.reliability", "best_effort",
              "Reliability of the camera subscriptions (best_effort = sensor-data profile).",
              choices=RELIABILITIES),
    ParamSpec("image_qos.depth", 5, "History depth of the camera subscriptions.", 1, 100),
    ParamSpec("max_image_side", 4096,
              "Images with a side longer than this are dropped with a warning.", 16, 8192),
    # --- segmentation and tracking
    ParamSpec("max_objects", 16, "Most objects tracked at once over all goals; also the most "
              "prompts in one segment request.", 1, 256),
    ParamSpec("max_goals", 8, "Most track goals running at once (each holds one executor thread).",
              1, 64, read_only=True),
    ParamSpec("memory_frames", 7, "Tracker memory slots (1 + recent frames), at most the model's 7.", 1, 7),
    ParamSpec("max_conditioning_frames", 2,
              "Prompted (conditioning) frames kept per object: the first and the most recent.", 1, 16),
    ParamSpec("lost_after", 10,
              "Consecutive frames without the object after which it is reported lost.", 1, 10000),
    ParamSpec("mask_threshold", 0.0,
              "Mask-logit threshold of published masks (0 = SAM's own; higher = tighter masks).",
              -32.0, 32.0),
    ParamSpec("min_score", 0.0,
              "Objects whose predicted IoU is below this are reported not visible (0 = off); a track "
              "goal's min_score applies when larger.", 0.0, 1.0),
    ParamSpec("camera_timeout", 5.0,
              "A track goal aborts with reason camera_timeout after this many seconds without a "
              "camera frame.", 0.1, 3600.0),
    ParamSpec("client_lost_timeout", 10.0,
              "A track goal ends with reason client_gone after the track action has had no client "
              "(no feedback subscriber) for this many seconds; 0 = never.", 0.0, 3600.0),
    ParamSpec("segment_timeout", 30.0,
              "Deadline of a segment call: one not answered within this many seconds of its arrival "
              "(queued or running) is answered success false, 'timed out ...'.", 0.1, 600.0),
    ParamSpec("segment_queue", 8,
              "Segment requests waiting for the inference worker at most (the running one not "
              "counted); a call arriving when the queue is full is answered at once with success false, "
              "'busy ...'.", 1, 256),
    ParamSpec("max_result_mb", 64.0,
              "Largest mask payload of one segment answer (prompts x image pixels, one byte each, when "
              "output.mask_in_results is true): a bigger request is refused before inference.", 1.0, 4096.0),
    # --- perception pipeline (issue 16): detector / click prompts, per-object 3D from depth
    ParamSpec("topics.detections", "",
              "Optional vision_msgs/Detection2DArray input (e.g. from yolo_ros): each array's boxes "
              "prompt the tracker (new objects, or re-prompts of the objects they overlap); '' = off."),
    ParamSpec("topics.clicked_point", "",
              "Optional geometry_msgs/PointStamped input (rviz Publish Point: /clicked_point): a new "
              "tracked object at that pixel; '' = off."),
    ParamSpec("topics.depth", "",
              "Optional registered depth image (16UC1 mm or 32FC1 m, aligned to the colour image) for "
              "per-object 3D (~/detections_3d, ~/object_points); '' = off."),
    ParamSpec("detections.iou_threshold", 0.3,
              "A detection box re-prompts the tracked object it overlaps at least this much (IoU with "
              "its tracked box or its last detection box; classes must agree where given).", 0.0, 1.0),
    ParamSpec("detections.reprompt_interval", 1.0,
              "Seconds between two re-prompts of one object by detections (0 = every array).",
              0.0, 3600.0),
    ParamSpec("detections.min_score", 0.0, "Detections whose best hypothesis scores below this are "
              "ignored.", 0.0, 1.0),
    ParamSpec("detections.forget_after", 30,
              "A detection or click object the tracker reports lost and no detection supports for this "
              "many tracked frames is dropped (0 = never).", 0, 100000),
    ParamSpec("detections.max_wait", 0.5,
              "Seconds a detection array stamped after the latest frame waits for its frame before it "
              "is applied to the latest one.", 0.0, 10.0),
    ParamSpec("depth.tolerance", 0.02,
              "Most seconds between a colour frame's stamp and the depth image paired with it.", 0.0, 1.0),
    ParamSpec("depth.edge_threshold", 0.05,
              "Depth discontinuity: neighbouring pixels whose depths differ by more than this fraction "
              "of the depth separate the object from what the mask spills onto (rejected).", 0.001, 1.0),
    ParamSpec("depth.max_range", 10.0, "Depth beyond this many metres is ignored.", 0.1, 1000.0),
    ParamSpec("depth.cloud_decimation", 2,
              "Point clouds keep every N-th pixel row and column (centroid / extent use all pixels).",
              1, 64),
    # --- outputs
    ParamSpec("output.masks", True, "Publish ~/masks (anima_sam2_msgs/ObjectMaskArray)."),
    ParamSpec("output.mask_in_results", True,
              "Fill ObjectMask.mask pixels in ~/masks, segment results and track feedback; false "
              "sends scores and boxes only."),
    ParamSpec("output.label_image", True, "Publish ~/label_image (mono8/mono16 instance ids)."),
    ParamSpec("output.overlay", True, "Publish ~/overlay (bgr8 colour overlay for rviz)."),
    ParamSpec("output.markers", True, "Publish ~/markers (visualization_msgs/MarkerArray)."),
    ParamSpec("output.segment_results", True,
              "Also publish segment results on the output topics (not only tracking results)."),
    ParamSpec("output.overlay_alpha", 0.5, "Opacity of the mask colours in ~/overlay.", 0.0, 1.0),
    ParamSpec("output.diagnostics", True, "Publish /diagnostics."),
    ParamSpec("output.diagnostics_period", 1.0, "Seconds between /diagnostics messages.", 0.1, 60.0),
    ParamSpec("output.detections", True,
              "Publish ~/detections (vision_msgs/Detection2DArray: box, score, tracking id per object)."),
    ParamSpec("output.detections_3d", True,
              "Publish ~/detections_3d (vision_msgs/Detection3DArray: centroid and extent per object, "
              "in the depth frame; needs topics.depth)."),
    ParamSpec("output.object_points", True,
              "Publish ~/object_points (sensor_msgs/PointCloud2 of every object's masked depth, field "
              "object_id; needs topics.depth)."),
    ParamSpec("output.detection_clouds", False,
              "Also put each object's points in its Detection3D.source_cloud."),
)

_BY_NAME = {p.name: p for p in PARAMS}


@dataclass
class NodeParams:
    """Every parameter's value, read at configure time (attribute = name with '.' -> '_')."""

    model: str
    weights: str
    precision: str
    device: str
    seed: int
    autostart: bool
    topics_image: str
    topics_compressed_image: str
    topics_camera_info: str
    cameras: str
    image_qos_reliability: str
    image_qos_depth: int
    max_image_side: int
    max_objects: int
    max_goals: int
    memory_frames: int
    max_conditioning_frames: int
    lost_after: int
    mask_threshold: float
    min_score: float
    camera_timeout: float
    client_lost_timeout: float
    segment_timeout: float
    segment_queue: int
    max_result_mb: float
    output_masks: bool
    output_mask_in_results: bool
    output_label_image: bool
    output_overlay: bool
    output_markers: bool
    output_segment_results: bool
    output_overlay_alpha: float
    output_diagnostics: bool
    output_diagnostics_period: float
    topics_detections: str
    topics_clicked_point: str
    topics_depth: str
    detections_iou_threshold: float
    detections_reprompt_interval: float
    detections_min_score: float
    detections_forget_after: int
    detections_max_wait: float
    depth_tolerance: float
    depth_edge_threshold: float
    depth_max_range: float
    depth_cloud_decimation: int
    output_detections: bool
    output_detections_3d: bool
    output_object_points: bool
    output_detection_clouds: bool


MAX_CAMERAS = 8
_CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def camera_names(value: str) -> Tuple[List[str], Optional[str]]:
    """The ``cameras`` parameter as a list of names, and why it is invalid (or None)."""
    names = [n.strip() for n in str(value).split(",") if n.strip()]
    bad = [n for n in names if not _CAMERA_NAME.match(n)]
    if bad:
        return [], (f"cameras: {bad[0]!r} is not a valid camera name (a letter, then letters, digits "
                    f"or '_'; it becomes a topic name)")
    if len(set(names)) != len(names):
        return [], f"cameras: a name appears twice in {value!r}"
    if len(names) > MAX_CAMERAS:
        return [], f"cameras: {len(names)} names, at most {MAX_CAMERAS}"
    return names, None


def attr_name(name: str) -> str:
    """Dataclass attribute of a parameter name (``output.masks`` -> ``output_masks``)."""
    return name.replace(".", "_")


def defaults() -> NodeParams:
    """A ``NodeParams`` holding every default (for tests and tools without a node)."""
    return NodeParams(**{attr_name(p.name): p.default for p in PARAMS})


def descriptor(spec: ParamSpec):
    """The ``ParameterDescriptor`` of one parameter (type, description, range, choices)."""
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType

    kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    desc = ParameterDescriptor(name=spec.name, type=kinds[type(spec.default)],
                               description=spec.description, read_only=spec.read_only)
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.min_value is not None and spec.max_value is not None:
        if isinstance(spec.default, int) and not isinstance(spec.default, bool):
            desc.integer_range = [IntegerRange(from_value=int(spec.min_value),
                                               to_value=int(spec.max_value), step=1)]
        elif isinstance(spec.default, float):
            desc.floating_point_range = [FloatingPointRange(from_value=float(spec.min_value),
                                                            to_value=float(spec.max_value), step=0.0)]
        desc.additional_constraints = f"{spec.min_value} .. {spec.max_value}"
    return desc


def declare(node) -> None:
    """Declare every parameter on ``node`` (one by one, full dotted names: Humble bug #894)."""
    for spec in PARAMS:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))
    node.add_on_set_parameters_callback(check_choices)


def choice_error(name: str, value: Any) -> Optional[str]:
    """Why ``value`` is not allowed for ``name`` (a parameter with a list of choices), or None."""
    spec = _BY_NAME.get(name)
    if spec is None or not spec.choices:
        return None
    if str(value).lower() not in spec.choices:
        return f"{name} must be one of {', '.join(spec.choices)}, got {value!r}"
    return None


def check_choices(parameters: List[Any]):
    """``on_set_parameters`` callback: refuse values outside a parameter's choices."""
    from rcl_interfaces.msg import SetParametersResult

    for param in parameters:
        reason = choice_error(param.name, param.value)
        if reason:
            return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def read(node) -> NodeParams:
    """Read every declared parameter into a ``NodeParams``."""
    values: Dict[str, Any] = {}
    for spec in PARAMS:
        value = node.get_parameter(spec.name).value
        if isinstance(spec.default, str):
            value = str(value)
            if spec.choices:
                value = value.lower()
        values[attr_name(spec.name)] = value
    return NodeParams(**values)
