r"""Quantize a SAM 2.1 network with torchao and write an ``anima-sam2-int8`` artifact.

Python API::

    quantize_model(model, recipe="int8-dynamic")   # in place, returns the quantized module names

CLI (``anima-sam2 quantize`` through :func:`register`, or ``python -m anima_sam2_ros.quant.quantize``)::

    anima-sam2 quantize --model sam2.1-hiera-small --weights <dir|hf-id|dummy> \\
        [--out DIR] [--recipe int8-dynamic|int8-weight-only] [--no-eval] [--device cpu] [--seed 0]

``--out`` defaults to ``default_artifact_dir("<model>-int8")`` (``$ANIMA_SAM2_HOME/<name>`` or
``~/.cache/anima_sam2/<name>``), where ``load_model("<model>-int8")`` looks for it.

Steps: load the FP32 network (``engine.load_model``), measure its FP32 safetensors size, quantize
a copy, export, reload the artifact from disk (checks it), compare it with the FP32 network on
synthetic scenes (``evaluate.py``; skipped with ``--no-eval``) and write the fidelity numbers
into ``fidelity.json`` and the ``README.md`` model card.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from typing import Any, Callable, List, Optional, Sequence

from anima_sam2_ros.engine.int8_format import RECIPES, default_artifact_dir
from anima_sam2_ros.engine.torchao_support import import_torchao

from .flatten import unwrap_model

LOG = logging.getLogger("anima_sam2_ros.quant")


def _torchao_config(recipe: str):
    if import_torchao() is None:
        raise RuntimeError("quantizing needs torchao (pip install torchao): it does not import here")
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, Int8WeightOnlyConfig

    if recipe == "int8-dynamic":
        # per-token symmetric int8 activations, per-output-channel symmetric int8 weights
        return Int8DynamicActivationInt8WeightConfig(set_inductor_config=False)
    if recipe == "int8-weight-only":
        # per-output-channel symmetric int8 weights, activations stay float
        return Int8WeightOnlyConfig(set_inductor_config=False)
    raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")


def quantize_model(model: Any, recipe: str = "int8-dynamic",
                   filter_fn: Optional[Callable[[Any, str], bool]] = None) -> List[str]:
    """Quantize the ``nn.Linear`` layers of a ``Sam2VideoModel`` (or ``LoadedModel``) in place.

    Args:
        model: FP32 network (its Linear weights must be float32).
        recipe: ``int8-dynamic`` (torchao ``Int8DynamicActivationInt8WeightConfig``) or
            ``int8-weight-only`` (``Int8WeightOnlyConfig``).
        filter_fn: ``(module, fqn) -> bool`` choosing the layers (default: every ``nn.Linear``).

    Returns:
        the module paths of the quantized layers.
    """
    import torch

    from .flatten import quantized_linear_names

    net = unwrap_model(model)
    config = _torchao_config(recipe)
    from torchao.quantization import quantize_

    if quantized_linear_names(net):
        raise ValueError("the model is already quantized")
    bad = [n for n, m in net.named_modules()
           if isinstance(m, torch.nn.Linear) and m.weight.dtype != torch.float32]
    if bad:
        raise ValueError(f"quantize an FP32 network (Linear weights of {bad[:3]} are not float32)")

    def default_filter(module: Any, fqn: str) -> bool:
        return isinstance(module, torch.nn.Linear)

    quantize_(net, config, filter_fn=filter_fn or default_filter)
    names = quantized_linear_names(net)
    if not names:
        raise RuntimeError("torchao quantized no layer")
    return names


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------
def add_quantize_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``anima-sam2 quantize``."""
    parser.add_argument("--model", default="sam2.1-hiera-small",
                        help="registry name of the FP32 network (default: sam2.1-hiera-small)")
    parser.add_argument("--weights", default=None,
                        help="FP32 weights: local HF-format dir, HF id in the local cache, or 'dummy' "
                             "(default: the registry's HF id)")
    parser.add_argument("--out", default=None,
                        help="artifact directory (default: $ANIMA_SAM2_HOME/<model>-int8 or "
                             "~/.cache/anima_sam2/<model>-int8)")
    parser.add_argument("--recipe", choices=RECIPES, default="int8-dynamic",
                        help="int8-dynamic (int8 weights + dynamic per-token int8 activations, default) "
                             "or int8-weight-only")
    parser.add_argument("--no-eval", action="store_true", help="skip the INT8 vs FP32 fidelity evaluation")
    parser.add_argument("--device", default="cpu",
                        help="device for quantization and evaluation (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of dummy weights (default 0)")
    parser.add_argument("--eval-scenes", type=int, default=None, help="number of synthetic scenes")
    parser.add_argument("--eval-frames", type=int, default=None, help="frames of the tracked sequence")
    return parser


def add_quantize_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``quantize`` sub-command to an argparse ``subparsers``; sets ``func=run_quantize``."""
    parser = subparsers.add_parser("quantize", help="quantize a SAM 2.1 model to an INT8 artifact",
                                   description=__doc__.split("\n\n")[0])
    add_quantize_arguments(parser)
    parser.set_defaults(func=run_quantize)
    return parser


def register(subparsers: Any) -> None:
    """Add both ``quantize`` and ``evaluate`` sub-commands (for ``anima_sam2_ros/cli.py``)."""
    from .evaluate import add_evaluate_parser

    add_quantize_parser(subparsers)
    add_evaluate_parser(subparsers)


def _strip_int8(name: str) -> str:
    return name[: -len("-int8")] if name.endswith("-int8") else name


def run_quantize(args: argparse.Namespace) -> int:
    """Execute ``anima-sam2 quantize`` for parsed ``args``; returns the exit status."""
    import torch

    from anima_sam2_ros.engine.errors import EngineError
    from anima_sam2_ros.engine.int8_loader import load_int8_artifact
    from anima_sam2_ros.engine.loading import load_model
    from anima_sam2_ros.progress import Progress

    from .export import export_int8_artifact, measure_fp32_safetensors_bytes
    from .model_card import write_model_card

    base = _strip_int8(args.model)
    out = args.out or str(default_artifact_dir(base + "-int8"))
    progress = Progress(3 if args.no_eval else 4)
    try:
        progress.stage(f"loading {base} (fp32, weights {args.weights or 'default'})")
        t0 = time.perf_counter()
        fp32 = load_model(base, weights=args.weights, precision="fp32", device=args.device, seed=args.seed)
        LOG.info("loaded %s (%s) in %.1f s", base, fp32.weights_source, time.perf_counter() - t0)
    except EngineError as exc:
        print(f"error: {exc} [quantizing needs the model's real weights; --weights dummy runs the "
              "pipeline on random weights]", file=sys.stderr)
        return 2
    progress.stage(f"quantizing the Linear layers ({args.recipe})")
    fp32_bytes = measure_fp32_safetensors_bytes(fp32.model)
    qmodel = copy.deepcopy(fp32.model)
    names = quantize_model(qmodel, args.recipe)
    source = {
        "model": base,
        "weights": fp32.weights_source,
        "is_dummy": bool(fp32.is_dummy),
        "seed": args.seed if fp32.is_dummy else None,
        "precision": "fp32",
    }
    progress.stage(f"writing the artifact to {out} and loading it back")
    path = export_int8_artifact(qmodel, out, recipe=args.recipe, source_info=source,
                                fp32_safetensors_bytes=fp32_bytes)
    del qmodel
    print(f"wrote {path} ({len(names)} quantized Linear layers, recipe {args.recipe})")
    info = json.loads((path / "quantization.json").read_text())
    sizes = info["sizes"]
    print(f"  model.safetensors {sizes['artifact_model_safetensors_bytes'] / 1e6:.2f} MB, FP32 "
          f"{sizes['fp32_safetensors_bytes'] / 1e6:.2f} MB, ratio {sizes['compression_ratio']:.2f}x")
    t0 = time.perf_counter()
    int8_net = load_int8_artifact(path, args.device)
    print(f"  reloaded from disk in {time.perf_counter() - t0:.2f} s")
    if not args.no_eval:
        from .evaluate import evaluate, print_report

        kwargs = {"on_step": lambda what, done, total: progress.step(done, total, what), "warn": False}
        if args.eval_scenes is not None:
            kwargs["num_scenes"] = args.eval_scenes
        if args.eval_frames is not None:
            kwargs["num_frames"] = args.eval_frames
        progress.stage("INT8 vs FP32 fidelity on synthetic scenes (--no-eval skips it)")
        with torch.inference_mode():
            report = evaluate(int8_net, fp32, **kwargs)
        report["a"] = f"INT8 artifact {path}"
        report["b"] = f"FP32 {base} ({fp32.weights_source})"
        report["is_dummy"] = bool(fp32.is_dummy)
        (path / "fidelity.json").write_text(json.dumps(report, indent=2) + "\n")
        write_model_card(path)
        print_report(report)
    progress.done()
    return 0


def main_quantize(argv: Optional[Sequence[str]] = None) -> int:
    """``anima-sam2 quantize`` as a stand-alone entry point."""
    parser = argparse.ArgumentParser(prog="anima-sam2 quantize", description=__doc__.split("\n\n")[0])
    add_quantize_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_quantize(args)


main = main_quantize

if __name__ == "__main__":
    sys.exit(main_quantize())
