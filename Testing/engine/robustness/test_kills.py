"""A kill (SIGKILL: no handler, no cleanup) at every step of writing a case leaves the case folder with either the old
or the new complete result, never neither; the next run's recovery puts back or removes what the kill left, and
says so.

Each kill forks this process and lets the child write the case with :func:`morse.inference.outputs.write_case`,
whose ``on_step`` callback is the child killing itself after step *k*; the parent then inspects the folder. Both
publish paths are covered: Linux's atomic exchange and the two renames of systems without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from morse import staging
from morse.imageio import read_image
from morse.inference.outputs import planned_files, write_case
from morse.inference.result import SegmentationResult
from morse.labels import LabelInfo

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin", reason="needs fork (Linux)")

SHAPE = (4, 24, 20)
STEPS_EXCHANGE = [
    "staged", "segmentation.nii.gz", "coarse.nii.gz", "gating.nii.gz", "uncertainty.nii.gz", "rectified.nii.gz",
    "preview.png", "segmentation.seg.nrrd", "summary.json", "permissions", "exchanged", "old-removed",
]  # fmt: skip
STEPS_RENAMES = [*STEPS_EXCHANGE[:-2], "moved-aside", "moved-in", "old-removed"]


def _result(value: int) -> SegmentationResult:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:3, 5 : 9 + value, 4:10] = value
    rng = np.random.default_rng(value)
    gating = rng.integers(0, 256, (2, *SHAPE), dtype=np.uint8)
    return SegmentationResult(
        labels=labels,
        coarse_labels=labels.copy(),
        ijk_to_ras=np.diag([-1.0, -1.0, 2.0, 1.0]),
        labels_info=[LabelInfo(1, "disc", (0.9, 0.2, 0.2)), LabelInfo(2, "ring", (0.2, 0.9, 0.2))],
        gating=gating,
        uncertainty=gating[0],
        rectified=np.zeros(SHAPE, np.uint8),
    )


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _write_in_a_killed_child(case: Path, result, kill_after: int, exchange: bool) -> list[str]:
    """Fork; the child writes ``case`` and SIGKILLs itself after step number ``kill_after`` (0-based; −1: never).
    Returns the steps the child reported before it died."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            if not exchange:
                staging._exchange = lambda a, b: False
            seen = []

            def on_step(name: str) -> None:
                seen.append(name)
                os.write(write, (name + "\n").encode())
                if len(seen) - 1 == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)

            write_case(case, result, np.zeros(SHAPE, np.float32), "ct.nii.gz", overwrite=True, on_step=on_step)
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        steps = f.read().split()
    _, status = os.waitpid(pid, 0)
    if kill_after >= 0:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (steps, status)
    return steps


def _is_complete_new(case: Path, new: SegmentationResult) -> bool:
    names = sorted(p.name for p in case.iterdir())
    if names != sorted(planned_files(new)):
        return False
    labels = read_image(case / "segmentation.nii.gz").array
    summary = json.loads((case / "summary.json").read_text(encoding="utf-8"))
    return np.array_equal(labels, new.labels) and summary["shape_kji"] == list(SHAPE)


@pytest.fixture
def old_case(tmp_path):
    case = tmp_path / "out" / "case"
    write_case(case, _result(1), np.zeros(SHAPE, np.float32), "old.nii.gz")
    return case, _hashes(case)


@pytest.mark.parametrize(
    ("exchange", "step"),
    [(True, s) for s in STEPS_EXCHANGE] + [(False, s) for s in STEPS_RENAMES],
    ids=[f"exchange-{s}" for s in STEPS_EXCHANGE] + [f"renames-{s}" for s in STEPS_RENAMES],
)
def test_a_kill_after_any_step_leaves_the_old_or_the_new_result(old_case, exchange, step):
    case, old = old_case
    new = _result(2)
    steps = STEPS_EXCHANGE if exchange else STEPS_RENAMES
    seen = _write_in_a_killed_child(case, new, steps.index(step), exchange)
    assert seen == steps[: steps.index(step) + 1]
    leftovers = sorted(p.name for p in case.parent.iterdir() if p.name.startswith(".case."))
    if step == "moved-aside":  # between the two renames: the old result is hidden until the next run
        assert not case.exists() and any(".case.old-" in n for n in leftovers)
    else:
        assert case.is_dir(), f"neither result is visible after a kill at {step}"
        assert _hashes(case) == old or _is_complete_new(case, new), step
        # before the publish step the old result is still there, after it the new one
        published = steps.index(step) >= steps.index("exchanged" if exchange else "moved-in")
        assert (_hashes(case) != old) == published, step
    # the next run (it holds the case's lock) puts back or removes what the kill left, with one note per action
    with staging.CaseLock(case):
        notes = staging.recover_leftovers(case)
    folders = [n for n in leftovers if ".partial-" in n or ".old-" in n]
    assert len(notes) == len(folders), (notes, leftovers)
    if step == "moved-aside":
        assert notes[0].endswith("they were put back") and _hashes(case) == old
    assert all("interrupted earlier run" in n for n in notes)
    assert sorted(p.name for p in case.parent.iterdir()) == ["case"]  # nothing hidden is left
    assert _hashes(case) == old or _is_complete_new(case, new)


def test_a_kill_with_no_earlier_result_leaves_no_case_folder_or_a_complete_one(tmp_path):
    case = tmp_path / "out" / "case"
    new = _result(2)
    steps = [*STEPS_EXCHANGE[:-2], "renamed"]  # no old folder: one rename publishes
    assert _write_in_a_killed_child(case, new, -1, True) == steps
    for k, step in enumerate(steps):
        case = tmp_path / f"out{k}" / "case"
        _write_in_a_killed_child(case, new, k, True)
        if step == "renamed":
            assert _is_complete_new(case, new)
        else:
            assert not case.exists(), step  # never a half-written case folder
        with staging.CaseLock(case):
            notes = staging.recover_leftovers(case)
        assert len(notes) == (0 if step == "renamed" else 1)
        assert sorted(p.name for p in case.parent.iterdir()) == (["case"] if step == "renamed" else [])


def _locked_write_in_child(case: Path, result, go: int) -> int:
    """Fork a child that waits for the start signal on ``go`` (a pipe), then locks and writes ``case`` as
    ``morse segment`` does; its exit status: 0 written, 3 refused by the lock, 1 anything else."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.read(go, 1)
            with staging.CaseLock(case):
                staging.recover_leftovers(case)
                write_case(case, result, np.zeros(SHAPE, np.float32), "ct.nii.gz", overwrite=True)
            code = 0
        except Exception as exc:  # the lock's OutputError is the expected refusal
            code = 3 if "another MORSE run is writing" in str(exc) else 1
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("round_", range(5))
def test_two_runs_on_one_case_folder_never_lose_the_result(tmp_path, round_):
    """Two runs started together on the same case folder: each writes a complete result or is refused by the lock
    (never both refused), and the folder ends holding one complete result with nothing hidden beside it."""
    case = tmp_path / "out" / "case"
    write_case(case, _result(1), np.zeros(SHAPE, np.float32), "old.nii.gz")
    read, write = os.pipe()
    results = {_locked_write_in_child(case, _result(2 + n), read): 2 + n for n in range(2)}
    os.write(write, b"go")  # both children start at once
    codes = {}
    for pid, value in results.items():
        _, status = os.waitpid(pid, 0)
        codes[value] = os.waitstatus_to_exitcode(status)
    os.close(read)
    os.close(write)
    assert sorted(codes.values()) in ([0, 0], [0, 3]), codes
    assert any(_is_complete_new(case, _result(value)) for value, code in codes.items() if code == 0)
    assert sorted(p.name for p in case.parent.iterdir()) == ["case"]
