"""Source scan of ``anima_sam2_ros/``: no unrestricted pickle, no shelling out, paths from parameters.

Reads the source tree as text (ast), imports nothing from it.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "anima_sam2_ros"
# Process launchers that start this package's own executables with argument lists (never a shell).
SUBPROCESS_ALLOWED = {"demo.py", "cli.py", "bench/node_bench.py", "bench/stream_bench.py", "bench/soak.py"}
# Modules that run inside the node / engine (the robot's process): no process launching at all,
# no file names except from parameters.
RUNTIME_DIRS = ("node", "engine")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _modules():
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 10, PKG
    for path in files:
        rel = path.relative_to(PKG).as_posix()
        yield rel, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node, node.module.split(".")[0]


def _dotted(func) -> str:
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, _dotted(node.func)


def test_no_pickle_module_is_imported():
    bad = [(rel, node.lineno, mod) for rel, tree in _modules() for node, mod in _imports(tree)
           if mod in PICKLE_MODULES]
    assert not bad, bad


def test_every_torch_load_is_weights_only():
    seen = 0
    bad = []
    for rel, tree in _modules():
        for node, name in _calls(tree):
            if name.endswith("torch.load"):
                seen += 1
                kw = {k.arg: k.value for k in node.keywords}
                value = kw.get("weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    bad.append((rel, node.lineno))
    assert not bad, f"torch.load without weights_only=True: {bad}"
    assert seen >= 1  # the loader's pytorch_model.bin path is checked, not skipped


def test_no_shelling_out():
    bad = []
    for rel, tree in _modules():
        allowed = rel in SUBPROCESS_ALLOWED
        for node, mod in _imports(tree):
            if mod in ("subprocess", "pty", "commands") and not allowed:
                bad.append((rel, node.lineno, f"import {mod}"))
        for node, name in _calls(tree):
            if name in ("os.system", "os.popen", "os.execv", "os.execvp", "os.execl", "os.spawnl",
                        "os.spawnv", "os.posix_spawn", "eval", "exec", "__import__"):
                bad.append((rel, node.lineno, name))
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append((rel, node.lineno, "shell=..."))
            command = node.args[0] if node.args else None
            if name.startswith("subprocess.") and command is not None \
                    and not isinstance(command, (ast.List, ast.Name)):
                bad.append((rel, node.lineno, f"{name} with a non-list command"))
    assert not bad, bad


@pytest.mark.parametrize("folder", RUNTIME_DIRS)
def test_runtime_file_paths_come_from_parameters(folder):
    """In node/ and engine/: no file is opened under a literal name; every opened path is a variable.

    The only file the runtime reads is the model's weights, whose location is the ``weights``
    parameter (or, for a Hugging Face id, the local HF cache); nothing is written.
    """
    openers = ("open", "io.open", "os.open", "pathlib.Path", "Path", "np.load", "numpy.load", "torch.load",
               "load_file", "safe_open", "np.save", "torch.save", "cv2.imread", "cv2.imwrite")
    bad = []
    for rel, tree in _modules():
        if not rel.startswith(folder + "/"):
            continue
        for node, name in _calls(tree):
            if name in openers or name.endswith((".load_file", ".safe_open")):
                first = node.args[0] if node.args else None
                if isinstance(first, ast.Constant) or isinstance(first, ast.JoinedStr):
                    bad.append((rel, node.lineno, name))
                if name in ("open", "io.open") and len(node.args) > 1:
                    mode = node.args[1]
                    if isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+"):
                        bad.append((rel, node.lineno, "opened for writing"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith(("/home/", "/tmp/", "/root/", "/opt/", "/var/", "/etc/")):
                    bad.append((rel, node.lineno, f"literal path {text!r}"))
    assert not bad, bad
