"""Host memory without psutil: 3D Slicer ships no psutil, so the engine must run with it unimportable, and
:mod:`morse.fileutils` must report what psutil would (where psutil is there to compare)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from morse import fileutils

ENGINE_TESTS = Path(__file__).resolve().parents[1]
MODULE_DIR = ENGINE_TESTS.parents[1] / "MORSESegmentation"

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and the cgroup v2 files")


def test_engine_runs_with_psutil_unimportable(tmp_path):
    # The old code imported psutil lazily, so the imports alone passed: exercise each call that asks for memory.
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["psutil"] = None  # what "import psutil" meets in 3D Slicer's Python
        sys.path[:0] = [{str(MODULE_DIR)!r}, {str(ENGINE_TESTS)!r}]
        import numpy as np
        import SimpleITK as sitk
        import morse, morse.imageio, morse.inference.pipeline, morse.inference.worker
        from morse.experiments.runs import hardware
        from morse.inference import memory
        from synthetic import tiny_model_config

        path = {str(tmp_path / "ct.nrrd")!r}
        sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), path)
        assert morse.imageio.read_image(path).array.shape == (4, 5, 6)
        plan = memory.plan_inference((4, 32, 32), 2, (4, 32, 32), tiny_model_config(), refine=True, gating=True,
                                     uncertainty=True, batch_size=2)
        assert plan.available > 0
        assert "GiB RAM" in hardware()
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")


def test_available_and_total_memory_match_psutil():
    psutil = pytest.importorskip("psutil", reason="psutil is only there to compare against")
    ours, theirs = fileutils.available_memory(), psutil.virtual_memory().available
    if sys.platform.startswith("linux") and fileutils._cgroup_room() is not None:
        pytest.skip("a cgroup limit applies here, which psutil does not see")
    assert abs(ours - theirs) <= 0.1 * theirs
    assert abs(fileutils.total_memory() - psutil.virtual_memory().total) <= 0.1 * psutil.virtual_memory().total


@linux_only
def test_cgroup_limit_caps_the_available_memory(tmp_path, monkeypatch):
    monkeypatch.setattr(fileutils, "CGROUP_ROOT", tmp_path)
    (tmp_path / "memory.current").write_text("1000000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert fileutils.available_memory() == fileutils._linux_meminfo("MemAvailable")
    (tmp_path / "memory.max").write_text("5000000\n")
    assert fileutils.available_memory() == 4_000_000
    (tmp_path / "memory.max").write_text("500000\n")  # above its limit already (reclaim pending): nothing left
    assert fileutils.available_memory() == 0


@linux_only
def test_unreadable_sources_give_the_conservative_fallback(tmp_path, monkeypatch):
    def unreadable(key):
        raise OSError("no /proc here")

    monkeypatch.setattr(fileutils, "CGROUP_ROOT", tmp_path)
    monkeypatch.setattr(fileutils, "_linux_meminfo", unreadable)
    expected = min(fileutils.FALLBACK_AVAILABLE, fileutils.total_memory() // 2)
    assert fileutils.available_memory() == expected
