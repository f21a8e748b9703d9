"""Fidelity of one SAM 2.1 network against another (typically INT8 artifact vs FP32 source).

Both networks see the same deterministic synthetic scenes (filled ellipses, rectangles and
triangles with their own texture on a textured background, several image sizes) and the same
prompts (one positive point, a positive + a negative point, a box). Reported per prompt kind:

* mask IoU between A's and B's source-size masks (low-res logits upsampled bilinear, > 0 — the
  engine's definition);
* relative error of A's low-res mask logits against B's: ``||la - lb|| / ||lb||``;
* predicted-IoU score difference;

and over a tracked sequence (the objects move a few pixels per frame; prompted by a point on
frame 0, then propagated) the per-frame mask IoU and logit error between A and B. Tracking runs
the engine's ``Tracker`` (``engine/tracker.py``); where that module is missing it falls back to
transformers' ``Sam2VideoModel`` streaming session directly (the report's ``method`` says which).

With dummy (random) weights the numbers say little about real accuracy (random networks have
near-zero logits, where a tiny change flips pixels); the same code runs unchanged on real weights.

CLI: ``anima-sam2 evaluate --a <artifact dir | name> --b <artifact dir | name> [--a-weights W]
[--b-weights W]`` (``main_evaluate``; ``python -m anima_sam2_ros.quant.evaluate``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

LOG = logging.getLogger("anima_sam2_ros.quant")

DEFAULT_SIZES: Tuple[Tuple[int, int], ...] = ((480, 640), (720, 1280), (1024, 1024))
DUMMY_WARNING = ("WARNING: dummy (random) weights: these fidelity numbers say little about the real "
                 "model's accuracy; they only show the pipeline works. Re-run on real weights.")


# ----------------------------------------------------------------------------------------------
# synthetic scenes
# ----------------------------------------------------------------------------------------------
def _texture(rng: np.random.Generator, height: int, width: int, base: np.ndarray, amp: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    out = np.empty((height, width, 3), np.float32)
    for c in range(3):
        f1, f2 = rng.uniform(0.01, 0.08, size=2)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        wave = np.sin(xx * f1 + p1) * np.cos(yy * f2 + p2)
        out[:, :, c] = base[c] + amp * wave
    out += rng.normal(0.0, amp * 0.3, size=out.shape).astype(np.float32)
    return out


def _shape_mask(kind: str, height: int, width: int, cx: float, cy: float, rx: float, ry: float,
                angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ca, sa = np.cos(angle), np.sin(angle)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    if kind == "ellipse":
        return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= rx) & (np.abs(v) <= ry)
    # triangle: apex up, base down (in the rotated frame)
    return (v <= ry) & (v >= -ry) & (np.abs(u) <= rx * (v + ry) / (2 * ry))


def make_objects(seed: int, height: int, width: int, num_objects: int = 2) -> List[Dict[str, Any]]:
    """Random shape parameters (kind, centre, radii, angle, colour, velocity) for a scene."""
    rng = np.random.default_rng(seed + 7919)
    kinds = ("ellipse", "rectangle", "triangle")
    objs = []
    short = min(height, width)
    for i in range(num_objects):
        objs.append({
            "kind": kinds[(seed + i) % 3],
            "cx": float(rng.uniform(0.25, 0.75) * width),
            "cy": float(rng.uniform(0.25, 0.75) * height),
            "rx": float(rng.uniform(0.08, 0.18) * short),
            "ry": float(rng.uniform(0.08, 0.18) * short),
            "angle": float(rng.uniform(0, np.pi)),
            "color": rng.uniform(20, 235, size=3).astype(np.float32),
            "v": (float(rng.uniform(-0.012, 0.012) * width), float(rng.uniform(-0.012, 0.012) * height)),
        })
    return objs


def render_scene(seed: int, height: int, width: int, objects: List[Dict[str, Any]],
                 t: int = 0) -> Tuple[np.ndarray, List[np.ndarray]]:
    """``HxWx3`` uint8 image and one boolean mask per object (objects moved by ``t`` steps).

    Later objects occlude earlier ones; masks are the visible parts.
    """
    rng = np.random.default_rng(seed)
    bg_base = rng.uniform(60, 190, size=3).astype(np.float32)
    img = _texture(rng, height, width, bg_base, 35.0)
    masks = []
    for i, o in enumerate(objects):
        m = _shape_mask(o["kind"], height, width, o["cx"] + t * o["v"][0], o["cy"] + t * o["v"][1],
                        o["rx"], o["ry"], o["angle"] + 0.02 * t)
        tex = _texture(np.random.default_rng(seed * 31 + i), height, width, o["color"], 18.0)
        img[m] = tex[m]
        for prev in masks:
            prev &= ~m
        masks.append(m)
    return np.clip(img, 0, 255).astype(np.uint8), masks


def prompts_for(mask: np.ndarray, rng: np.random.Generator) -> Dict[str, Dict[str, np.ndarray]]:
    """Point, point+negative point and box prompts (source pixels) for one object mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return {}
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))  # inside pixel nearest the centroid
    pos = np.array([[xs[i] + 0.5, ys[i] + 0.5]], np.float32)
    bys, bxs = np.nonzero(~mask)
    j = int(rng.integers(len(bxs)))
    neg = np.array([[bxs[j] + 0.5, bys[j] + 0.5]], np.float32)
    h, w = mask.shape
    pad = 0.03 * min(h, w)
    box = np.array([max(xs.min() - pad, 0), max(ys.min() - pad, 0),
                    min(xs.max() + 1 + pad, w), min(ys.max() + 1 + pad, h)], np.float32)
    return {
        "point": {"points": pos, "labels": np.array([1], np.int32)},
        "points+negative": {"points": np.concatenate([pos, neg]), "labels": np.array([1, 0], np.int32)},
        "box": {"box": box},
    }


# ----------------------------------------------------------------------------------------------
# model access
# ----------------------------------------------------------------------------------------------
class _Net:
    """A bare ``Sam2VideoModel`` or a ``LoadedModel`` seen the same way."""

    def __init__(self, m: Any) -> None:
        import torch

        self.loaded = m if hasattr(m, "model") and hasattr(m, "precision") else None
        self.model = m.model if self.loaded is not None else m
        self.is_dummy = bool(getattr(self.loaded, "is_dummy", False))
        self.image_size = int(getattr(self.loaded, "image_size", 0) or self.model.config.image_size)
        if self.loaded is not None:
            self.device = self.loaded.device
        else:
            first = next(iter(self.model.parameters()))
            self.device = first.device
        self.precision = getattr(self.loaded, "precision", "fp32")
        self._torch = torch

    def ctx(self):
        import contextlib

        if self.loaded is not None:
            return self.loaded.autocast()
        return contextlib.nullcontext()


def _pixels(net: _Net, image: np.ndarray):
    from anima_sam2_ros.engine.preprocess import preprocess_image

    return preprocess_image(image, net.image_size, net.device)


def _image_logits(net: _Net, embeddings: Any, prompt: Dict[str, np.ndarray], src_hw: Tuple[int, int]):
    import torch

    from anima_sam2_ros.engine.preprocess import scale_points

    kwargs: Dict[str, Any] = {}
    if "points" in prompt:
        pts = scale_points(prompt["points"], src_hw, net.image_size)
        kwargs["input_points"] = torch.from_numpy(pts)[None, None].to(net.device)
        labels = torch.from_numpy(prompt["labels"].astype(np.int64))
        kwargs["input_labels"] = labels[None, None].to(net.device)
    if "box" in prompt:
        box = scale_points(prompt["box"].reshape(2, 2), src_hw, net.image_size).reshape(4)
        kwargs["input_boxes"] = torch.from_numpy(box)[None, None].to(net.device)
    with net.ctx():
        out = net.model._single_frame_forward(image_embeddings=embeddings, multimask_output=False, **kwargs)
    logits = out.pred_masks.reshape(-1, *out.pred_masks.shape[-2:])[0]
    score = float(out.iou_scores.flatten()[0].float())
    return logits.float(), score, float(out.object_score_logits.flatten()[0])


def _rel_err(a: Any, b: Any) -> float:
    import torch

    a = a.float().flatten()
    b = b.float().flatten()
    return float(torch.linalg.vector_norm(a - b) / torch.clamp(torch.linalg.vector_norm(b), min=1e-12))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def _to_mask(logits: Any, src_hw: Tuple[int, int]) -> np.ndarray:
    from anima_sam2_ros.engine.preprocess import upsample_logits

    return (upsample_logits(logits, src_hw) > 0).cpu().numpy()


def _summary(values: List[float]) -> Tuple[float, float, float]:
    arr = np.asarray(values, np.float64)
    return float(arr.mean()), float(arr.min()), float(arr.max())


# ----------------------------------------------------------------------------------------------
# tracking through a transformers streaming session
# ----------------------------------------------------------------------------------------------
def _track(net: _Net, frames: List[np.ndarray], first_prompts: List[Dict[str, np.ndarray]]):
    """Per-frame low-res logits ``(num_objects, h, w)`` from a streaming session."""
    import torch
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    from anima_sam2_ros.engine.preprocess import scale_points

    h, w = frames[0].shape[:2]
    session = Sam2VideoInferenceSession(video_height=h, video_width=w, inference_device=net.device,
                                        inference_state_device=net.device, video_storage_device=net.device,
                                        dtype=torch.float32)
    outs = []
    for t, frame in enumerate(frames):
        pixels = _pixels(net, frame)
        if t == 0:
            ids = []
            for k, prompt in enumerate(first_prompts):
                obj_id = k + 1
                idx = session.obj_id_to_idx(obj_id)
                pts = torch.from_numpy(scale_points(prompt["points"], (h, w), net.image_size))
                session.add_point_inputs(idx, 0, {
                    "point_coords": pts[None, None].to(net.device),
                    "point_labels": torch.from_numpy(
                        prompt["labels"].astype(np.int32))[None, None].to(net.device),
                })
                ids.append(obj_id)
            session.obj_with_new_inputs = ids
        with net.ctx():
            out = net.model(inference_session=session, frame=pixels)
        outs.append(out.pred_masks[:, 0].float().cpu())
        # Keep only what the next frames need of the frame buffer (the session would keep all).
        if session.processed_frames is not None and t > 0:
            session.processed_frames.pop(t - 1, None)
    return outs


def _track_engine(net: _Net, frames: List[np.ndarray], first_prompts: List[Dict[str, np.ndarray]]):
    """Per-frame low-res logits ``(num_objects, h, w)`` from the engine's ``Tracker``."""
    import types

    import torch

    from anima_sam2_ros.engine.tracker import Tracker
    from anima_sam2_ros.engine.types import Prompt

    loaded = net.loaded
    if loaded is None:  # a bare network (e.g. load_int8_artifact): the attributes Tracker reads
        loaded = types.SimpleNamespace(model=net.model, device=net.device, dtype=torch.float32,
                                       image_size=net.image_size, precision="int8",
                                       autocast=torch.inference_mode)
    trk = Tracker(loaded)
    outs = []
    for t, frame in enumerate(frames):
        prompts = None
        if t == 0:
            prompts = [Prompt(object_id=k + 1, points=p["points"], labels=p["labels"])
                       for k, p in enumerate(first_prompts)]
        trk.step(frame, prompts)
        order = {oid: i for i, oid in enumerate(trk.object_ids)}
        logits = trk.last_low_res_logits.float().cpu()
        outs.append(logits[[order[k + 1] for k in range(len(first_prompts))]])
    return outs


def _tracking_fn():
    """The engine's Tracker where it exists, else transformers' streaming session."""
    try:
        import anima_sam2_ros.engine.tracker  # noqa: F401
    except ImportError:
        return _track, "transformers Sam2VideoModel streaming session (engine Tracker unavailable)"
    return _track_engine, "anima_sam2_ros.engine.Tracker"


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------
def evaluate(a: Any, b: Any, num_scenes: int = 6, image_sizes: Sequence[Tuple[int, int]] = DEFAULT_SIZES,
             num_frames: int = 8, num_objects: int = 2, seed: int = 0, tracking: bool = True,
             is_dummy: Optional[bool] = None,
             on_step: Optional[Callable[[str, int, int], None]] = None, warn: bool = True) -> Dict[str, Any]:
    """Compare network ``a`` with reference ``b`` (bare ``Sam2VideoModel`` or ``LoadedModel``).

    Returns a JSON-able dict: ``image`` (per prompt kind: n, iou_mean/min, logit_rel_err_mean/max,
    score_abs_diff_mean), ``encoder_rel_err_mean``, ``tracking`` (per-frame IoU summary) and the
    settings, and :data:`DUMMY_WARNING` as ``warning`` when either network has dummy weights (or
    ``is_dummy``), also logged unless ``warn`` is false (the CLI: :func:`print_report` prints it).
    ``on_step(what, done, total)`` is called after each scene and each tracked network (progress).
    """
    import torch

    na, nb = _Net(a), _Net(b)
    if na.image_size != nb.image_size:
        raise ValueError(f"the networks take different input sizes ({na.image_size} vs {nb.image_size})")
    dummy = bool(is_dummy) if is_dummy is not None else (na.is_dummy or nb.is_dummy)
    if dummy and warn:
        LOG.warning(DUMMY_WARNING)
    step = on_step or (lambda what, done, total: None)
    t0 = time.perf_counter()
    per_kind: Dict[str, Dict[str, List[float]]] = {}
    enc_err: List[float] = []
    sizes = [tuple(int(v) for v in s) for s in image_sizes]
    with torch.inference_mode():
        for s in range(num_scenes):
            h, w = sizes[s % len(sizes)]
            objs = make_objects(seed + s, h, w, num_objects)
            image, masks = render_scene(seed + s, h, w, objs)
            emb = []
            for net in (na, nb):
                with net.ctx():
                    emb.append(net.model.get_image_embeddings(_pixels(net, image)))
            enc_err.append(_rel_err(emb[0][-1], emb[1][-1]))
            rng = np.random.default_rng(seed + s + 1000)
            for mask in masks:
                for kind, prompt in prompts_for(mask, rng).items():
                    la, sa, pa = _image_logits(na, emb[0], prompt, (h, w))
                    lb, sb, pb = _image_logits(nb, emb[1], prompt, (h, w))
                    row = per_kind.setdefault(kind, {"iou": [], "rel": [], "score": [], "present": [],
                                                     "agree": []})
                    row["present"].append(float(pb > 0))
                    row["agree"].append(float((pa > 0) == (pb > 0)))
                    row["iou"].append(_iou(_to_mask(la, (h, w)), _to_mask(lb, (h, w))))
                    row["rel"].append(_rel_err(la, lb))
                    row["score"].append(abs(sa - sb))
            step("scene", s + 1, num_scenes)
        image_report = {}
        for kind, row in per_kind.items():
            iou_mean, iou_min, _ = _summary(row["iou"])
            rel_mean, _, rel_max = _summary(row["rel"])
            image_report[kind] = {"n": len(row["iou"]), "iou_mean": iou_mean, "iou_min": iou_min,
                                  "logit_rel_err_mean": rel_mean, "logit_rel_err_max": rel_max,
                                  "score_abs_diff_mean": float(np.mean(row["score"])),
                                  # B's object-score logit > 0; where it is not, transformers sets the
                                  # mask logits to a constant (-1024) and IoU / rel. error are trivial.
                                  "object_present_fraction": float(np.mean(row["present"])),
                                  "presence_agreement": float(np.mean(row["agree"]))}
        report: Dict[str, Any] = {
            "num_scenes": num_scenes,
            "image_sizes": [list(x) for x in sizes[:max(1, min(num_scenes, len(sizes)))]],
            "seed": seed,
            "image": image_report,
            "encoder_rel_err_mean": float(np.mean(enc_err)) if enc_err else None,
            "is_dummy": dummy,
        }
        if tracking and num_frames > 0:
            h, w = sizes[0]
            objs = make_objects(seed + 500, h, w, num_objects)
            frames, gts = [], []
            for t in range(num_frames):
                img, ms = render_scene(seed + 500, h, w, objs, t)
                frames.append(img)
                gts.append(ms)
            rng = np.random.default_rng(seed + 501)
            first = [prompts_for(m, rng)["point"] for m in gts[0] if m.any()]
            track, method = _tracking_fn()
            ta = track(na, frames, first)
            step(f"tracking {num_frames} frames: network", 1, 2)
            tb = track(nb, frames, first)
            step(f"tracking {num_frames} frames: network", 2, 2)
            ious, rels = [], []
            for fa, fb in zip(ta, tb, strict=True):
                ma, mb = _to_mask(fa, (h, w)), _to_mask(fb, (h, w))
                ious.append([_iou(ma[k], mb[k]) for k in range(len(first))])
                rels.append([_rel_err(fa[k], fb[k]) for k in range(len(first))])
            flat = [v for row in ious for v in row]
            report["tracking"] = {
                "method": method + ", point prompt on frame 0",
                "num_frames": num_frames, "num_objects": len(first), "image_size": [h, w],
                "iou_mean": float(np.mean(flat)), "iou_min": float(np.min(flat)),
                "iou_last": float(np.mean(ious[-1])),
                "iou_per_frame": [float(np.mean(r)) for r in ious],
                "logit_rel_err_mean": float(np.mean([v for row in rels for v in row])),
            }
    report["seconds"] = round(time.perf_counter() - t0, 2)
    if dummy:
        report["warning"] = DUMMY_WARNING
    return report


def print_report(report: Dict[str, Any], file: Any = None) -> None:
    """Human-readable table of an :func:`evaluate` result."""
    out = file or sys.stdout
    if report.get("is_dummy"):
        print(DUMMY_WARNING, file=out)
    if report.get("a") or report.get("b"):
        print(f"A: {report.get('a')}\nB: {report.get('b')}", file=out)
    print(f"{'prompt':<18}{'n':>4}{'IoU mean':>10}{'IoU min':>10}{'rel.err mean':>14}{'max':>9}"
          f"{'present':>9}", file=out)
    for kind, row in report.get("image", {}).items():
        print(f"{kind:<18}{row['n']:>4}{row['iou_mean']:>10.4f}{row['iou_min']:>10.4f}"
              f"{row['logit_rel_err_mean']:>14.4f}{row['logit_rel_err_max']:>9.4f}"
              f"{row.get('object_present_fraction', float('nan')):>9.2f}", file=out)
    if report.get("encoder_rel_err_mean") is not None:
        print(f"image-encoder feature rel. error (mean): {report['encoder_rel_err_mean']:.4f}", file=out)
    trk = report.get("tracking")
    if trk:
        print(f"tracking {trk['num_frames']} frames x {trk['num_objects']} objects: IoU mean "
              f"{trk['iou_mean']:.4f}, min {trk['iou_min']:.4f}, last frame {trk['iou_last']:.4f}; "
              f"logit rel.err mean {trk['logit_rel_err_mean']:.4f}", file=out)
    print(f"({report.get('seconds')} s)", file=out)


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def _load_side(spec: str, weights: Optional[str], device: str, seed: int):
    """An artifact directory, or a registry name (+ weights) through ``engine.load_model``."""
    import os

    from anima_sam2_ros.engine.int8_format import is_int8_artifact, read_quantization_info
    from anima_sam2_ros.engine.loading import load_model

    if is_int8_artifact(os.path.expanduser(spec)):
        path = os.path.expanduser(spec)
        info = read_quantization_info(path)
        model = (info.get("source") or {}).get("model")
        if model:
            return load_model(model + "-int8", weights=path, device=device), bool(
                (info.get("source") or {}).get("is_dummy"))
        from anima_sam2_ros.engine.int8_loader import load_int8_artifact

        return load_int8_artifact(path, device), bool((info.get("source") or {}).get("is_dummy"))
    loaded = load_model(spec, weights=weights, device=device, seed=seed)
    return loaded, loaded.is_dummy


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``anima-sam2 evaluate``."""
    parser.add_argument("--a", required=True, help="model A: INT8 artifact directory or registry name")
    parser.add_argument("--b", required=True, help="model B (reference): artifact directory or registry name")
    parser.add_argument("--a-weights", default=None,
                        help="weights of A when --a is a name (dir, HF id, dummy)")
    parser.add_argument("--b-weights", default=None,
                        help="weights of B when --b is a name (dir, HF id, dummy)")
    parser.add_argument("--seed", type=int, default=0, help="seed of dummy weights (default 0)")
    parser.add_argument("--device", default="cpu", help="device (default cpu)")
    parser.add_argument("--scenes", type=int, default=6, help="number of synthetic scenes (default 6)")
    parser.add_argument("--frames", type=int, default=8, help="frames of the tracked sequence (0: skip)")
    parser.add_argument("--json", default=None, help="also write the report to this JSON file")
    return parser


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an argparse ``subparsers``; sets ``func=run_evaluate``."""
    parser = subparsers.add_parser("evaluate",
                                   help="compare two models (e.g. INT8 vs FP32) on synthetic scenes",
                                   description=__doc__.split("\n\n")[0])
    add_evaluate_arguments(parser)
    parser.set_defaults(func=run_evaluate)
    return parser


def run_evaluate(args: argparse.Namespace) -> int:
    """Execute ``anima-sam2 evaluate`` for parsed ``args``; returns the exit status."""
    from anima_sam2_ros.engine.errors import EngineError
    from anima_sam2_ros.progress import Progress

    progress = Progress(3)
    try:
        progress.stage(f"loading A: {args.a}")
        a, dummy_a = _load_side(args.a, args.a_weights, args.device, args.seed)
        progress.stage(f"loading B: {args.b}")
        b, dummy_b = _load_side(args.b, args.b_weights, args.device, args.seed)
    except EngineError as exc:
        print(f"error: {exc} [a registry name needs that model's real weights; --a-weights / --b-weights "
              "dummy compare on random weights]", file=sys.stderr)
        return 2
    progress.stage(f"comparing on {args.scenes} synthetic scenes and {args.frames} tracked frames")
    report = evaluate(a, b, num_scenes=args.scenes, num_frames=args.frames, is_dummy=dummy_a or dummy_b,
                      on_step=lambda what, done, total: progress.step(done, total, what), warn=False)
    progress.done()
    report["a"], report["b"] = args.a, args.b
    print_report(report)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
    return 0


def main_evaluate(argv: Optional[Sequence[str]] = None) -> int:
    """``anima-sam2 evaluate`` as a stand-alone entry point."""
    parser = argparse.ArgumentParser(prog="anima-sam2 evaluate", description=__doc__.split("\n\n")[0])
    add_evaluate_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_evaluate(args)


main = main_evaluate

if __name__ == "__main__":
    sys.exit(main_evaluate())
