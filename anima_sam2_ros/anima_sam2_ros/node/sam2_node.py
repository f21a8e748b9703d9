"""``sam2_node``: the SAM 2.1 lifecycle node (camera in, ``~/segment``, ``~/track``, mask topics).

Lifecycle (driven by ``~/change_state``, as ``ros2 lifecycle set`` or launch_ros do):

* ``__init__`` declares the parameters (``params.PARAMS``) and nothing else.
* ``__init__`` also creates the ``~/segment`` service and the ``~/track`` action server: they
  exist for the node's whole life, so a call in any state gets an answer (``success: false`` /
  goal rejected with the reason while unconfigured or inactive) instead of hanging.
* ``on_configure`` loads the model (``load_model``: model, weights, precision, device), builds the
  ``Segmenter`` and the shared ``Tracker``, starts the inference worker thread, and creates the
  lifecycle publishers. Any failure (missing or corrupt weights...) is logged with its reason,
  everything built so far is released, and it returns FAILURE (the node stays unconfigured;
  configuring again with good parameters works).
* ``on_activate`` subscribes to the camera (``Image``, optional ``CompressedImage``,
  ``CameraInfo`` republished on ``~/camera_info``) and starts the /diagnostics timer. While the
  node is not active, ``~/segment`` answers ``success: false`` with the reason and goals are
  rejected.
* ``on_deactivate`` aborts running goals (reason ``deactivated``), answers queued segment calls,
  and removes the camera subscriptions and the timer.
* ``on_cleanup`` / ``on_shutdown`` / ``on_error`` stop the worker, destroy the publishers, and
  release the model and its GPU memory.

Goals whose client vanished: rclpy does not tell which client sent a goal, but every action
client (rclpy, rclcpp, ``ros2 action``) subscribes to the action's feedback topic. When that topic
has had no subscriber at all for ``client_lost_timeout`` seconds, running goals end with reason
``client_gone`` (a killed client disappears from the graph once its DDS lease expires: ~20 s
with Fast DDS defaults). Another live client of the same action keeps such goals running.

Threads: a ``SafeExecutor`` (``safety.py``: a ``MultiThreadedExecutor`` whose spin loop survives
an exception raised in any callback, rclpy's own parameter services included) with ``max_goals +
4`` threads and callback groups: lifecycle and parameter services in the node's default group;
camera callbacks in a mutually exclusive group (they only convert and store the frame in the
worker's depth-1 slot); the segment service in a reentrant group, its callback a coroutine that
awaits the worker's answer without holding a thread; the action server in a reentrant group (each
running goal holds one thread, at most ``max_goals``); the diagnostics and segment-deadline timers
in their own groups. So a burst of segment calls leaves every thread free for the camera, the
lifecycle, parameters and goals. The worker thread alone runs the model; see ``worker.py``.

Admission (``~/segment``): at most ``segment_queue`` requests wait for the worker; one more is
answered at once ``success: false, "busy ..."``; a request not answered within ``segment_timeout``
is answered ``"timed out ..."``. The service's QoS keeps ``SERVICE_QOS_DEPTH`` requests, so a
burst within that is never dropped by the middleware: every request gets an answer. Every
callback is wrapped by ``safety.guarded``; refused requests are logged throttled, with counts.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future as RclpyFuture

from anima_sam2_ros.engine.errors import InvalidInputError

from . import conversions, params
from .safety import ErrorLog, RefusalLog, SafeExecutor, guarded
from .shutdown import ignore_further_sigint

try:  # Jazzy and later
    from rclpy.event_handler import SubscriptionEventCallbacks
except ImportError:  # Humble
    from rclpy.qos_event import SubscriptionEventCallbacks

NODE_NAME = "sam2_node"
# How long deactivate / cleanup wait for running goal and service callbacks to return.
DRAIN_TIMEOUT = 5.0
# Seconds a finished goal's result stays available to clients (Kilted's default is only 10).
RESULT_TIMEOUT = 300
_OUTPUT_QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
# Requests (and responses) the segment service's middleware queues keep: far above any
# segment_queue (at most 256), so a burst is answered "busy" rather than dropped unseen.
SERVICE_QOS_DEPTH = 1000
_SERVICE_QOS = QoSProfile(depth=SERVICE_QOS_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                          history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
# Seconds between the deadline checks of queued segment requests.
DEADLINE_CHECK_PERIOD = 0.1
# Seconds between two log lines about refused requests / rejected goals (with counts).
REFUSAL_LOG_PERIOD = 5.0


def _policy_name(kind: Any) -> str:
    try:
        from rclpy.qos import qos_policy_name_from_kind

        return str(qos_policy_name_from_kind(kind))
    except Exception:  # noqa: BLE001 - only for a log line
        return str(kind)


class Sam2Node(LifecycleNode):
    """The SAM 2.1 segmentation / tracking lifecycle node (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        params.declare(self)
        # Every exception a callback raised (those racing a shutdown only counted).
        self.errors = ErrorLog(self.get_logger(), context_ok=self.context.ok)
        self._cb_camera = MutuallyExclusiveCallbackGroup()
        self._cb_segment = ReentrantCallbackGroup()
        self._cb_action = ReentrantCallbackGroup()
        self._cb_timer = MutuallyExclusiveCallbackGroup()
        self._cb_deadline = MutuallyExclusiveCallbackGroup()
        self._deadline_timer: Any = None
        # Refused calls / rejected goals: each kind of reason logged at once, repeats throttled.
        self._refusals = RefusalLog(self.get_logger(), "segment refused", REFUSAL_LOG_PERIOD)
        self._goal_refusals = RefusalLog(self.get_logger(), "track goal rejected", REFUSAL_LOG_PERIOD)
        self._params: Optional[params.NodeParams] = None
        self._model: Any = None
        self._worker: Any = None  # the first camera's (perception, diagnostics)
        self._streams: List[Any] = []  # camera_stream.CameraStream, one per camera
        self._shared_encoder: Any = None
        self._pubs: Dict[str, Any] = {}  # node-wide publishers (/diagnostics)
        self._subs: List[Any] = []
        self._segment_srv: Any = None
        self._action: Any = None
        self._diag_timer: Any = None
        self._active = False
        self._busy_lock = threading.Lock()
        self._busy = 0  # running execute / segment callbacks
        self._images_rejected = 0
        self._last_rejection = ""
        self._viz: Any = None
        self._viz_missing_logged = False
        self._configured = False
        # perception.Perception of each stream (stream.perception): detections / clicks / depth.
        from anima_sam2_msgs.action import Track
        from anima_sam2_msgs.srv import Segment

        self._segment_srv = self.create_service(
            Segment, "~/segment", self._guard("segment service", self._on_segment, lambda req, res: res),
            qos_profile=_SERVICE_QOS, callback_group=self._cb_segment)
        self._action = ActionServer(
            self, Track, "~/track", execute_callback=self._execute_track,
            goal_callback=self._guard("track goal callback", self._on_goal, GoalResponse.REJECT),
            cancel_callback=self._guard("track cancel callback", self._on_cancel, CancelResponse.ACCEPT),
            callback_group=self._cb_action, result_timeout=RESULT_TIMEOUT)
        self._feedback_topic = f"{self.get_fully_qualified_name()}/track/_action/feedback"

    # ------------------------------------------------------------------ helpers
    def _guard(self, what: str, fn: Any, default: Any = None) -> Any:
        """``fn`` wrapped so an exception is logged (traceback once) and ``default`` returned."""
        return guarded(self.errors, what, default)(fn)

    @property
    def executor_threads(self) -> int:
        """Threads the executor needs: one per concurrent goal plus camera, services and timer."""
        return int(self.get_parameter("max_goals").value) + 4

    @contextlib.contextmanager
    def _busy_scope(self):
        with self._busy_lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1

    def _wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._busy_lock:
                if self._busy == 0:
                    return True
            time.sleep(0.02)
        return False

    def _visualization(self) -> Any:
        if self._viz is None:
            try:
                from . import visualization
            except ImportError as exc:
                if not self._viz_missing_logged:
                    self._viz_missing_logged = True
                    self.get_logger().warning(f"overlay / label image / markers unavailable: {exc}")
                return None
            self._viz = visualization
        return self._viz

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Load the model, start the worker, create publishers, the service and the action."""
        log = self.get_logger()
        try:
            p = params.read(self)
            for name in ("precision", "image_qos.reliability"):
                reason = params.choice_error(name, getattr(p, params.attr_name(name)))
                if reason:
                    log.error(f"configure failed: {reason}")
                    return TransitionCallbackReturn.FAILURE
            cameras, reason = params.camera_names(p.cameras)
            if reason:
                log.error(f"configure failed: {reason}")
                return TransitionCallbackReturn.FAILURE
            from .camera_stream import OUTPUTS, build_streams

            streams = build_streams(cameras, p.topics_image, p.topics_compressed_image, p.topics_camera_info)
            from anima_sam2_ros.engine import ModelLoadError, Segmenter, Tracker, load_model

            from .worker import Worker, WorkerConfig

            log.info(f"loading model {p.model!r} (weights {p.weights or 'default'}, precision "
                     f"{p.precision}, device {p.device})")
            t0 = time.monotonic()
            try:
                self._model = load_model(p.model, weights=p.weights or None, precision=p.precision,
                                         device=p.device, seed=p.seed)
                # Batched encoder passes pay on a GPU; on a CPU a batch of N frames measured slower
                # than N passes (README, "bench cameras"), so each camera encodes on its own there.
                if len(streams) > 1 and self._model.device.type == "cuda":
                    from anima_sam2_ros.engine.shared_encoder import SharedEncoder

                    self._shared_encoder = SharedEncoder(self._model, len(streams))
                engines = []
                for _ in streams:
                    tracker = None
                    if self._model.can_track:
                        tracker = Tracker(self._model, num_maskmem=p.memory_frames,
                                          max_conditioning_frames=p.max_conditioning_frames,
                                          lost_after=p.lost_after, mask_threshold=p.mask_threshold,
                                          encoder=self._shared_encoder)
                    engines.append((Segmenter(self._model, mask_threshold=p.mask_threshold), tracker))
                if not self._model.can_track:  # image-only weights: Segment works, Track is refused
                    log.warning(f"{self._model.tracking_refusal}; Track goals, ~/detections and "
                                f"clicked points will be refused")
            except (ModelLoadError, InvalidInputError) as exc:
                log.error(f"configure failed: cannot load model {p.model!r}: {exc}")
                self._teardown()
                return TransitionCallbackReturn.FAILURE
            self._params = p
            from diagnostic_msgs.msg import DiagnosticArray
            from sensor_msgs.msg import CameraInfo, Image
            from visualization_msgs.msg import MarkerArray

            types = {"masks": conversions_msg("ObjectMaskArray"), "label_image": Image, "overlay": Image,
                     "camera_info": CameraInfo, "markers": MarkerArray}
            self._pubs["diagnostics"] = self._lifecycle_pub(DiagnosticArray, "/diagnostics")
            config = WorkerConfig(max_objects=p.max_objects, max_goals=p.max_goals, min_score=p.min_score,
                                  mask_in_results=p.output_mask_in_results, segment_queue=p.segment_queue)
            for stream, (segmenter, tracker) in zip(streams, engines, strict=True):
                stream.pubs = {key: self._lifecycle_pub(types[key], stream.output_topic(key))
                               for key in OUTPUTS}
                stream.worker = Worker(segmenter, tracker, config, self.get_logger(),
                                       functools.partial(self._publish_outputs, stream))
                self._streams.append(stream)
            self._worker = streams[0].worker
            from .perception import Perception

            for k, stream in enumerate(self._streams):
                stream.perception = Perception(self, p, stream.worker, _OUTPUT_QOS, camera=stream.name,
                                               first=k == 0)
            for stream in self._streams:
                stream.worker.start()
            self._configured = True
            if cameras:
                how = ("a shared, batched image encoder" if self._shared_encoder is not None
                       else "one encoder pass per camera frame on the CPU")
                log.info(f"cameras: {', '.join(cameras)} (one model, {how})")
            log.info(f"configured: {self._model!r} in {time.monotonic() - t0:.1f} s")
            return TransitionCallbackReturn.SUCCESS
        except Exception as exc:  # noqa: BLE001 - an exception here would end in ERROR without a log
            log.error(f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._teardown()
            return TransitionCallbackReturn.FAILURE

    def _lifecycle_pub(self, msg_type: Any, topic: str) -> Any:
        return self.create_lifecycle_publisher(msg_type, topic, _OUTPUT_QOS)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera, start the diagnostics timer, enable the publishers."""
        try:
            self._create_camera_subscriptions()
            for stream in self._streams:
                if stream.perception is not None:
                    stream.perception.activate(self._camera_qos())
            p = self._params
            if p.output_diagnostics:
                self._diag_timer = self.create_timer(
                    p.output_diagnostics_period, self._guard("diagnostics timer", self._publish_diagnostics),
                    callback_group=self._cb_timer)
            self._deadline_timer = self.create_timer(
                DEADLINE_CHECK_PERIOD, self._guard("segment deadline timer", self._expire_segments),
                callback_group=self._cb_deadline)
            self._active = True
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"activate failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self._deactivate_entities()
            return TransitionCallbackReturn.FAILURE
        self.get_logger().info("active: camera on " + ", ".join(s.topic_name for s in self._subs))
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Abort running goals, answer queued requests, drop the camera subscriptions."""
        try:
            self._deactivate_entities()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"deactivate: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker, destroy service / action / publishers, release the model."""
        try:
            self._teardown()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"cleanup: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything, from any state."""
        try:
            self._deactivate_entities()
            self._teardown()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"shutdown: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything; SUCCESS returns the node to unconfigured."""
        try:
            self._deactivate_entities()
            self._teardown()
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"error recovery: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE
        return TransitionCallbackReturn.SUCCESS

    def autostart(self) -> bool:
        """Configure and activate when the ``autostart`` parameter is set; False if that failed."""
        if not self.get_parameter("autostart").value:
            return True
        try:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                self.get_logger().error("autostart: configure failed; the node stays unconfigured")
                return False
            if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                self.get_logger().error("autostart: activate failed")
                return False
        except Exception as exc:  # noqa: BLE001 - RCLError on Humble/Jazzy for an invalid transition
            self.get_logger().error(f"autostart failed: {type(exc).__name__}: {exc}")
            return False
        return True

    def stop_work(self) -> None:
        """End running goals and queued requests and stop the worker (process exit, first step).

        Done before the executor shuts down so that blocked goal / segment callbacks return.
        """
        self._active = False
        for worker in self._workers():
            worker.end_all_goals("shutdown")
            worker.fail_pending("the node is shutting down")
            worker.stop(timeout=5.0)
        self._wait_idle(1.0)

    def release(self) -> None:
        """Destroy what configure and activate created and free the model (process exit)."""
        self._active = False
        with contextlib.suppress(Exception):
            self._deactivate_entities()
        with contextlib.suppress(Exception):
            self._teardown()
        self._wait_idle(DRAIN_TIMEOUT)  # execute callbacks still finishing use the action server
        if self._action is not None:
            with contextlib.suppress(Exception):
                self._action.destroy()
            self._action = None
        if self._segment_srv is not None:
            with contextlib.suppress(Exception):
                self.destroy_service(self._segment_srv)
            self._segment_srv = None

    # ------------------------------------------------------------------ entities
    def _camera_qos(self) -> QoSProfile:
        p = self._params
        reliability = (ReliabilityPolicy.RELIABLE if p.image_qos_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(depth=int(p.image_qos_depth), reliability=reliability,
                          history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)

    def _create_camera_subscriptions(self) -> None:
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        qos = self._camera_qos()
        for stream in self._streams:
            bound = functools.partial
            for topic, msg_type, callback in (
                    (stream.image_topic, Image, bound(self._on_image, stream)),
                    (stream.compressed_topic, CompressedImage, bound(self._on_compressed, stream)),
                    (stream.camera_info_topic, CameraInfo, bound(self._on_camera_info, stream))):
                if not topic:
                    continue
                callback = self._guard(f"camera callback ({topic})", callback)
                events = SubscriptionEventCallbacks(
                    incompatible_qos=self._guard("QoS event callback",
                                                 lambda info, t=topic: self._on_incompatible_qos(t, info)))
                self._subs.append(self.create_subscription(msg_type, topic, callback, qos,
                                                           callback_group=self._cb_camera,
                                                           event_callbacks=events))

    def _workers(self) -> List[Any]:
        return [s.worker for s in self._streams if s.worker is not None]

    def _deactivate_entities(self) -> None:
        self._active = False
        for worker in self._workers():
            ended = worker.end_all_goals("deactivated")
            worker.fail_pending("the node was deactivated")
            if ended:
                self.get_logger().info(f"deactivate: aborted {len(ended)} track goal(s)")
        if not self._wait_idle(DRAIN_TIMEOUT):
            self.get_logger().warning("deactivate: goal / segment callbacks still running")
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        for stream in self._streams:
            if stream.perception is not None:
                stream.perception.deactivate()
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._deadline_timer is not None:
            self.destroy_timer(self._deadline_timer)
            self._deadline_timer = None
        for worker in self._workers():
            worker.slot.clear()

    def _teardown(self) -> None:
        """Undo configure (safe on a partial configure)."""
        self._active = False
        self._configured = False
        for worker in self._workers():
            if not worker.stop(timeout=10.0):
                self.get_logger().warning("an inference thread did not stop within 10 s")
        self._worker = None
        self._wait_idle(DRAIN_TIMEOUT)
        for stream in self._streams:
            if stream.perception is not None:
                stream.perception.destroy()
                stream.perception = None
        destroy_pub = getattr(self, "destroy_lifecycle_publisher", self.destroy_publisher)
        for pub in [*self._pubs.values(), *(p for s in self._streams for p in s.pubs.values())]:
            destroy_pub(pub)
        self._pubs = {}
        self._streams = []
        self._shared_encoder = None
        if self._model is not None:
            self._model.release()
            self._model = None
        self._params = None

    # ------------------------------------------------------------------ camera
    def _on_image(self, stream: Any, msg: Any) -> None:
        self._store_frame(stream, msg, conversions.image_from_msg)

    def _on_compressed(self, stream: Any, msg: Any) -> None:
        self._store_frame(stream, msg, conversions.image_from_compressed)

    def _store_frame(self, stream: Any, msg: Any, convert: Any) -> None:
        worker, p = stream.worker, self._params
        if not self._active or worker is None or p is None:
            return
        try:
            image, encoding = convert(msg, p.max_image_side)
        except Exception as exc:  # noqa: BLE001 - ConversionError, or any decoder error: a dropped frame
            self._images_rejected += 1
            self._last_rejection = str(exc)[:300]
            self.get_logger().warning(f"camera image dropped ({self._images_rejected} so far): {exc}",
                                      throttle_duration_sec=5.0)
            return
        worker.slot.put(image, encoding, conversions.header_copy(msg.header))

    def _on_camera_info(self, stream: Any, msg: Any) -> None:
        if stream.perception is not None:
            stream.perception.on_camera_info(msg)
        pub = stream.pubs.get("camera_info")
        if self._active and pub is not None and pub.get_subscription_count() > 0:
            pub.publish(msg)

    def _on_incompatible_qos(self, topic: str, info: Any) -> None:
        p = self._params
        mine = p.image_qos_reliability if p is not None else "?"
        self.get_logger().warning(
            f"INCOMPATIBLE QoS on camera topic '{topic}': a publisher's QoS does not match this "
            f"subscription (policy {_policy_name(info.last_policy_kind)}, {info.total_count} incompatible "
            f"publisher(s)); NO IMAGES WILL ARRIVE from it. This node subscribes with reliability "
            f"{mine}, depth {p.image_qos_depth if p else '?'}: set parameter image_qos.reliability to "
            f"match the camera (a best_effort camera needs image_qos.reliability: best_effort).")

    # ------------------------------------------------------------------ segment
    async def _on_segment(self, request: Any, response: Any) -> Any:
        """``~/segment``: a coroutine, so waiting for the worker holds no executor thread."""
        with self._busy_scope():
            response.success = False
            try:
                job = self._submit_segment(request, response)
                if job is not None:
                    await self._answered(job)
                    self._segment_response(job, response)
            except Exception as exc:  # noqa: BLE001 - answer, never raise into the executor
                response.success = False
                response.message = f"internal error: {type(exc).__name__}: {exc}"
                self.errors.report("segment", exc)
            if not response.success:
                self._refusals.refused(response.message)
        return response

    def _answered(self, job: Any) -> RclpyFuture:
        """An rclpy future done when the worker (or the deadline timer) answers ``job``."""
        done = RclpyFuture()
        executor = self.executor

        def wake(_: Any) -> None:
            done.set_result(None)
            if executor is not None:
                executor.wake()  # the awaiting coroutine resumes on the executor's next pass

        job.future.add_done_callback(wake)
        return done

    def _submit_segment(self, request: Any, response: Any) -> Any:
        """Check the request and queue it: the worker's job, or None with ``response.message`` set."""
        from .camera_stream import pick
        from .worker import Frame

        p = self._params
        if not self._configured or self._worker is None or p is None:
            response.message = ("the node is not configured: configure and activate it first "
                                "(ros2 lifecycle set ... configure, then activate)")
            return None
        stream, reason = pick(self._streams, request.camera)
        if stream is None:
            response.message = reason
            return None
        worker = stream.worker
        if not self._active:
            response.message = "the node is not active: activate it first (ros2 lifecycle set ... activate)"
            return None
        if not len(request.prompts):
            response.message = "no prompts: give at least one Prompt (points, box or mask)"
            return None
        if len(request.prompts) > p.max_objects:
            response.message = f"{len(request.prompts)} prompts: at most max_objects = {p.max_objects}"
            return None
        try:
            if conversions.is_empty_image(request.image):
                frame = worker.slot.latest()
                if frame is None:
                    response.message = (f"no camera frame received yet on '{stream.image_topic}'; wait "
                                        f"for the camera or send an image in the request")
                    return None
            else:
                image, encoding = conversions.image_from_msg(request.image, p.max_image_side)
                frame = Frame(image, encoding, conversions.header_copy(request.image.header), 0,
                              time.monotonic(), time.time())
            prompts = conversions.assign_ids([conversions.prompt_from_msg(m, p.max_image_side)
                                              for m in request.prompts])
        except InvalidInputError as exc:
            response.message = str(exc)
            return None
        if p.output_mask_in_results:  # the answer holds one source-size mono8 mask per prompt
            h, w = frame.image.shape[:2]
            mb = h * w * len(prompts) / 2**20
            if mb > p.max_result_mb:
                response.message = (f"the answer would hold {mb:.0f} MB of masks ({len(prompts)} prompts x "
                                    f"{w}x{h}), more than max_result_mb = {p.max_result_mb:g}: send fewer "
                                    f"prompts or a smaller image")
                return None
        return worker.submit_segment(frame, prompts, bool(request.multimask_output), p.segment_timeout,
                                     return_logits=bool(request.return_mask_logits))

    @staticmethod
    def _segment_response(job: Any, response: Any) -> None:
        """Fill ``response`` from an answered job."""
        exc = job.future.exception()
        if exc is not None:
            response.message = str(exc)
            return
        objects, header, ms = job.future.result()
        response.result = conversions.mask_array_msg(objects, header)
        response.inference_ms = float(ms)
        response.mask_logits_size, response.mask_logits = job.mask_logits
        response.success = True
        response.message = f"{len(objects)} object(s) in {ms:.1f} ms"

    def _expire_segments(self) -> None:
        """Timer: answer segment requests past their deadline (``segment_timeout``)."""
        worker = self._worker
        if worker is not None:
            worker.expire()

    # ------------------------------------------------------------------ track
    def _on_goal(self, goal_request: Any) -> GoalResponse:
        from .camera_stream import pick

        if not self._active or self._worker is None:
            state = "active" if self._configured else "configured"
            self._goal_refusals.refused(f"the node is not {state}")
            return GoalResponse.REJECT
        stream, reason = pick(self._streams, goal_request.camera)
        if stream is None:
            self._goal_refusals.refused(reason)
            return GoalResponse.REJECT
        worker = stream.worker
        p = self._params
        goal, reason = worker.reserve_goal(goal_request.prompts, goal_request.max_frames,
                                           goal_request.min_score, goal_request.max_lost_frames,
                                           goal_request, p.max_image_side if p is not None else 8192)
        if goal is None:
            self._goal_refusals.refused(reason)
            return GoalResponse.REJECT
        self.get_logger().info(f"track goal accepted: objects {goal.object_ids}, max_frames "
                               f"{goal.max_frames}")
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle: Any) -> CancelResponse:
        return CancelResponse.ACCEPT

    def _execute_track(self, goal_handle: Any) -> Any:
        from anima_sam2_msgs.action import Track

        with self._busy_scope():
            from .camera_stream import pick

            result = Track.Result()
            stream, _ = pick(self._streams, goal_handle.request.camera)
            worker = stream.worker if stream is not None else None
            goal = worker.claim_goal(goal_handle.request) if worker is not None else None
            if goal is None:
                result.reason = "deactivated" if not self._active else "the goal was not reserved"
                if goal_handle.is_active:
                    goal_handle.abort()
                self.get_logger().info(f"track goal ended: {result.reason} before it started")
                return result
            try:
                self._run_goal(goal_handle, goal, worker)
            except Exception as exc:  # noqa: BLE001
                worker.end_goal(goal, f"internal error: {type(exc).__name__}: {exc}")
                self.get_logger().error(f"track goal: {exc}\n{traceback.format_exc()}")
            self._send_feedback(goal_handle, goal)
            result.frames_processed = int(goal.frames_processed)
            result.object_ids = [int(i) for i in goal.object_ids]
            result.reason = str(goal.end_reason)
            try:
                if goal_handle.is_active:
                    if goal.succeeded:
                        goal_handle.succeed()
                    elif goal.end_reason == "canceled" and goal_handle.is_cancel_requested:
                        goal_handle.canceled()
                    else:
                        goal_handle.abort()
            except Exception as exc:  # noqa: BLE001 - RCLError while the process shuts down
                self.get_logger().warning(f"track goal: cannot set the final state: {exc}")
            self.get_logger().info(f"track goal ended: {result.reason} after {result.frames_processed} "
                                   f"frame(s), objects {list(result.object_ids)}")
            return result

    def _run_goal(self, goal_handle: Any, goal: Any, worker: Any) -> None:
        timeout = float(self._params.camera_timeout) if self._params else 5.0
        client_timeout = float(self._params.client_lost_timeout) if self._params else 0.0
        clients_seen = time.monotonic()
        next_check = 0.0
        while True:
            goal.wake.wait(0.1)
            goal.wake.clear()
            self._send_feedback(goal_handle, goal)
            if goal.end_reason is not None:
                return
            if goal_handle.is_cancel_requested:
                worker.end_goal(goal, "canceled")
            elif not goal_handle.is_active:
                worker.end_goal(goal, "goal no longer active")
            elif not self._active:
                worker.end_goal(goal, "deactivated")
            else:
                last = max(goal.started, worker.slot.last_put or 0.0)
                now = time.monotonic()
                if now - last > timeout:
                    self.get_logger().warning(f"track goal: no camera frame for {timeout:g} s: aborting "
                                              f"(camera_timeout)")
                    worker.end_goal(goal, "camera_timeout")
                elif client_timeout > 0 and now >= next_check:
                    next_check = now + 0.5
                    if self._action_clients() > 0:
                        clients_seen = now
                    elif now - clients_seen > client_timeout:
                        self.get_logger().warning(
                            f"track goal: no action client on '{self._feedback_topic}' for "
                            f"{client_timeout:g} s: ending the goal (client_gone)")
                        worker.end_goal(goal, "client_gone")

    def _action_clients(self) -> int:
        """Subscribers of the track action's feedback topic (every action client has one)."""
        try:
            return int(self.count_subscribers(self._feedback_topic))
        except Exception:  # noqa: BLE001 - graph query failed: assume the client is there
            return 1

    @staticmethod
    def _send_feedback(goal_handle: Any, goal: Any) -> None:
        while goal.feedback:
            try:
                feedback = goal.feedback.popleft()
            except IndexError:
                return
            if goal_handle.is_active:
                feedback.published = conversions.stamp(time.time())
                goal_handle.publish_feedback(feedback)

    # ------------------------------------------------------------------ outputs
    def _publish_outputs(self, stream: Any, frame: Any, results: List[Any], objects: List[Any],
                         source: str) -> None:
        """Publish ~/masks, ~/label_image, ~/overlay and ~/markers of a camera (its worker thread)."""
        p, pubs = self._params, stream.pubs
        if p is None or not self._active or (source == "segment" and not p.output_segment_results):
            return
        perception = stream.perception
        if perception is not None:
            try:
                perception.publish(frame, results, source)
            except Exception as exc:  # noqa: BLE001 - the 2D outputs below go on
                self.errors.report("perception outputs", exc)

        def wanted(key: str, enabled: bool) -> Any:
            pub = pubs.get(key)
            return pub if enabled and pub is not None and pub.get_subscription_count() > 0 else None

        header = conversions.header_copy(frame.header)
        pub = wanted("masks", p.output_masks)
        if pub is not None:
            pub.publish(conversions.mask_array_msg(objects, header))
        label_pub = wanted("label_image", p.output_label_image)
        overlay_pub = wanted("overlay", p.output_overlay)
        marker_pub = wanted("markers", p.output_markers)
        if label_pub is None and overlay_pub is None and marker_pub is None:
            return
        viz = self._visualization()
        if viz is None:
            return
        # Each output on its own: one that fails is logged and the others are still published.
        if label_pub is not None:
            try:
                labels = viz.label_image(results, frame.image.shape[:2], allow_32bit=True)
                label_pub.publish(conversions.image_msg(labels, viz.LABEL_ENCODINGS[labels.dtype.itemsize],
                                                        header))
            except Exception as exc:  # noqa: BLE001
                self.errors.report("publishing ~/label_image", exc)
        if overlay_pub is not None:
            try:
                from anima_sam2_ros.engine.preprocess import to_rgb

                # Dummy weights: every overlay frame says so (viz.DUMMY_BANNER).
                banner = viz.DUMMY_BANNER if getattr(self._model, "is_dummy", False) else None
                overlay = viz.overlay_image(to_rgb(frame.image, frame.encoding), results,
                                            p.output_overlay_alpha, banner=banner)
                overlay_pub.publish(conversions.image_msg(overlay, "bgr8", header))
            except Exception as exc:  # noqa: BLE001
                self.errors.report("publishing ~/overlay", exc)
        if marker_pub is not None:
            try:
                marker_pub.publish(viz.marker_array(results, header))
            except Exception as exc:  # noqa: BLE001
                self.errors.report("publishing ~/markers", exc)

    def _publish_diagnostics(self) -> None:
        pub, worker, p = self._pubs.get("diagnostics"), self._worker, self._params
        if pub is None or worker is None or p is None or pub.get_subscription_count() == 0:
            return
        from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

        snap = worker.snapshot()
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: SAM 2.1 inference"
        status.hardware_id = str(self._model.device) if self._model is not None else ""
        status.level = DiagnosticStatus.OK
        status.message = "ok"
        age = snap["last_frame_age"]
        if not snap["worker_alive"]:
            status.level, status.message = DiagnosticStatus.ERROR, "inference thread stopped"
        elif snap["goals"] and (age < 0 or age > p.camera_timeout / 2):
            status.level, status.message = DiagnosticStatus.WARN, "track goals running but no camera frames"
        elif age < 0:
            topic = self._streams[0].image_topic if self._streams else p.topics_image
            status.level, status.message = DiagnosticStatus.WARN, f"no camera frame yet on '{topic}'"
        elif snap["errors"]:
            status.message = f"ok ({snap['errors']} inference error(s), last: {snap['last_error'][:120]})"
        values = {
            "latency_ms": f"{snap['latency_ms']:.1f}",
            "inference_ms": f"{snap['inference_ms']:.1f}",
            "fps": f"{snap['fps']:.2f}",
            "frames_received": str(snap["frames_received"]),
            "frames_dropped": str(snap["frames_dropped"]),
            "frames_rejected": str(self._images_rejected),
            "last_frame_rejection": self._last_rejection,
            "frames_tracked": str(snap["frames_tracked"]),
            "segment_calls": str(snap["segment_calls"]),
            "segment_queued": str(snap["segment_queued"]),
            "segment_busy": str(snap["segment_busy"]),
            "segment_timeouts": str(snap["segment_timeouts"]),
            "segment_refused": str(self._refusals.count),
            "callback_errors": str(self.errors.total),
            "track_goals": str(snap["goals"]),
            "tracked_objects": str(snap["objects"]),
            "tracker_objects": str(snap["tracker_objects"]),
            "errors": str(snap["errors"]),
            "gpu_memory_mb": f"{self._gpu_memory_mb():.1f}",
            "model": p.model,
            "precision": self._model.precision if self._model is not None else p.precision,
        }
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [status]
        pub.publish(msg)

    def _gpu_memory_mb(self) -> float:
        model = self._model
        if model is None or getattr(model.device, "type", "cpu") != "cuda":
            return 0.0
        try:
            import torch

            return torch.cuda.memory_allocated(model.device) / 2**20
        except Exception:  # noqa: BLE001 - diagnostics only
            return 0.0


def conversions_msg(name: str) -> Any:
    """A message class of this package by name (imported late: generated at build time)."""
    from anima_sam2_msgs import msg

    return getattr(msg, name)


def main(args: Optional[List[str]] = None) -> int:
    """Run the node: ``ros2 run anima_sam2_ros sam2_node [--ros-args ...]``."""
    rclpy.init(args=args)
    node: Optional[Sam2Node] = None
    executor: Optional[SafeExecutor] = None
    code = 0
    try:
        node = Sam2Node()
        executor = SafeExecutor(node.errors, num_threads=node.executor_threads)
        executor.add_node(node)
        if not node.autostart():
            code = 1
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        ignore_further_sigint()
        if node is not None:
            node.stop_work()
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
