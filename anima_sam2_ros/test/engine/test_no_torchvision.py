"""The engine runs where torchvision and PIL are absent (Jetson robots often lack a matching build).

A child interpreter gets a ``sitecustomize`` that makes torchvision, PIL and rclpy look
uninstalled even on machines that have them: ``importlib.util.find_spec`` answers None (what
transformers' availability probes see) and a meta-path finder raises ``ModuleNotFoundError`` on
any import. The child loads test-micro with dummy weights, segments, runs a few tracker steps when
``engine/tracker.py`` exists, and checks that none of the blocked modules got imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SITECUSTOMIZE = textwrap.dedent('''
    import importlib.abc
    import importlib.util
    import sys

    BLOCKED = ("torchvision", "PIL", "rclpy")

    def _blocked(name):
        return name.split(".")[0] in BLOCKED

    class _Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if _blocked(name):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by test)", name=name)
            return None

    _find_spec = importlib.util.find_spec

    def find_spec(name, package=None):
        if _blocked(name):
            return None
        return _find_spec(name, package)

    importlib.util.find_spec = find_spec
    sys.meta_path.insert(0, _Block())
''')

CHILD = textwrap.dedent('''
    import os
    import sys

    import numpy as np

    for mod in ("torchvision", "PIL", "rclpy"):
        try:
            __import__(mod)
        except ImportError:
            pass
        else:
            raise SystemExit(f"hook failed: {mod} imported")

    from anima_sam2_ros.engine import Prompt, Segmenter, load_model

    model = load_model("test-micro", weights="dummy", device="cpu")
    seg = Segmenter(model)
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:40, 20:50] = 200
    res = seg.segment_image(img, [Prompt(object_id=1, points=np.array([[30.0, 25.0]]), labels=np.array([1])),
                                  Prompt(object_id=2, box=np.array([5.0, 5.0, 60.0, 50.0]))],
                            multimask_output=True)
    assert [r.object_id for r in res] == [1, 2] and res[0].mask.shape == (60, 80)
    steps = 0
    if os.path.exists(os.path.join(os.path.dirname(__import__("anima_sam2_ros.engine").engine.__file__),
                                   "tracker.py")):
        from anima_sam2_ros.engine import Tracker

        trk = Tracker(model)
        out = trk.step(img, prompts=[Prompt(object_id=1, points=np.array([[30.0, 25.0]]),
                                            labels=np.array([1]))])
        for _ in range(3):
            out = trk.step(img)
            steps += 1
        assert out and out[0].mask.shape == (60, 80)
    leaked = [m for m in sys.modules if m.split(".")[0] in ("torchvision", "PIL", "rclpy")]
    assert not leaked, leaked
    print(f"OK tracker_steps={steps}")
''')


def test_engine_runs_without_torchvision_pil_rclpy(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), ROOT])
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "OK tracker_steps=" in proc.stdout
