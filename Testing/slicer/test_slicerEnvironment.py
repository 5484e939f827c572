"""Everything the inference worker imports gets installed: a virtual environment holding only packages that a
3D Slicer 5.10 installation bundles (plus the PyTorch extension's torch), then exactly what MORSE's first-use
installer adds to it, runs the worker end to end.

The environment is built without ``--system-site-packages`` and cached in ``.cache/slicer-env`` (git-ignored),
keyed by its contents; each test run checks that it still holds only the base packages, lets the real
:class:`DependencyInstaller` install what is missing (the pip command it builds, torch pinned by constraints),
runs the worker, and removes what the installer added again so that the next run starts from the same base.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODULE_DIR = REPO / "MORSESegmentation"
CACHE = REPO / ".cache" / "slicer-env"

# The Python packages of Slicer's own bundle (SuperBuild External_python-*.cmake) that MORSE's code could import;
# Slicer's other bundled packages (pydicom, GitPython, dicomweb-client...) are never imported by MORSE. Versions are
# this test environment's, so that pip takes them from its cache.
SLICER_BUNDLE = ("numpy", "scipy", "SimpleITK", "pillow", "packaging", "requests")


def torchPin() -> str:
    """The torch the Makefile installs (the CPU wheel the machines carry), standing in for the PyTorch extension's."""
    match = re.search(r"^TORCH_PIN \?= (\S+)", (REPO / "Makefile").read_text(), re.MULTILINE)
    return match.group(1) if match else "torch==2.13.0"


def basePins() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in SLICER_BUNDLE] + [torchPin()]


def venvPython(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def freeze(python: Path) -> dict[str, str]:
    done = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(done.stdout)}


def baseEnvironment() -> Path:
    """The cached base environment (built on first use: ~1 min, mostly installing torch)."""
    pins = basePins()
    key = hashlib.sha256(json.dumps([sys.version, pins]).encode()).hexdigest()[:16]
    folder = CACHE / key
    stamp = folder / "base-packages.json"
    python = venvPython(folder)
    if stamp.is_file() and python.is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)  # no system site-packages
    subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True)
    stamp.write_text(json.dumps(freeze(python), indent=1, sort_keys=True))
    return folder


INSTALLER = """
import json, sys
sys.path.insert(0, {module!r})
from MORSESegmentationLib.dependencies import DependencyInstaller, localPipInstall

def noTorchInstall(requirement):
    raise AssertionError("torch is there (the PyTorch extension's); the installer must not install it")

installed = DependencyInstaller(confirm=lambda message, details: True, installTorch=noTorchInstall,
                                pipInstall=localPipInstall).ensure()
print("INSTALLED", json.dumps([r.distribution for r in installed]))
"""


@pytest.mark.slow
def test_worker_runs_in_a_slicer_environment_after_the_installer(tinyPack, tmp_path):
    folder = baseEnvironment()
    python = venvPython(folder)
    base = json.loads((folder / "base-packages.json").read_text())
    assert freeze(python) == base, "the cached environment changed; delete .cache/slicer-env to rebuild it"
    assert "monai" not in base and "safetensors" not in base
    try:
        done = subprocess.run(
            [str(python), "-c", INSTALLER.format(module=str(MODULE_DIR))],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        installed = json.loads(done.stdout.split("INSTALLED", 1)[1])
        after = freeze(python)
        assert after["torch"] == base["torch"]  # never replaced
        assert {name: v for name, v in after.items() if name in base} == base  # nothing of Slicer's bundle changed
        added = sorted(set(after) - set(base))
        assert {name.lower() for name in installed} <= set(added)
        print(f"\ninstaller added: {', '.join(f'{n} {after[n]}' for n in added)}")

        volume = np.full((6, 32, 32), -120, np.int16)
        volume[2:5, 8:24, 8:24] = 160
        np.save(tmp_path / "input.npy", volume)
        ijkToRas = np.diag([-2.0, -2.0, 2.0, 1.0])
        request = {"input": "input.npy", "ijk_to_ras": ijkToRas.tolist(), "model": str(tinyPack), "device": "cpu"}
        (tmp_path / "request.json").write_text(json.dumps(request))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PYTHONPATH"] = str(MODULE_DIR)  # what the worker launch sets: the module folder, nothing else
        worker = subprocess.run(
            [str(python), "-m", "morse.inference.worker", str(tmp_path / "request.json")],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            cwd=tmp_path,
        )
        assert worker.returncode == 0, worker.stdout[-4000:] + worker.stderr[-4000:]
        assert '"event": "done"' in worker.stdout
        check = textwrap.dedent(
            f"""
            import sys; sys.path.insert(0, {str(MODULE_DIR)!r})
            from morse.inference.worker import read_result
            r = read_result({str(tmp_path / "result")!r})
            print(r.labels.shape, r.gating.dtype, r.model_id)
            """
        )
        shown = subprocess.run([str(python), "-c", check], capture_output=True, text=True, env=env, check=True)
        assert shown.stdout.split() == ["(6,", "32,", "32)", "uint8", "tiny-test"]
    finally:
        extra = sorted(set(freeze(python)) - set(base))
        if extra:  # back to the base for the next run
            subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", *extra], check=False)
