"""The review list travels with a result: built by the engine when asked (``segment_volume(review=True)``), written
into ``result.json`` by the worker and read back unchanged, equal to ``build_review`` of the same result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from morse.inference import worker
from morse.inference.pipeline import segment_volume
from morse.model import MorseModel
from morse.modelpack import load_model_pack, save_model_pack
from morse.uncertainty.review import build_review, settings_from_pack
from synthetic import LABELS, LPS_1MM, ring_slices, tiny_experiment, tiny_model_config

# The pack's calibration sets the review: with a sharp temperature, no opening and a tiny minimum size, the untrained
# network leaves many small regions to rank (where its rendering head disagrees, mostly).
CALIBRATION = {"temperature": 0.05, "review_threshold": 0.56, "min_region_ml": 0.001, "opening_mm": 0.0}


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """An untrained tiny MORSE pack (rendering head, experts) with a calibration block for the review."""
    torch.manual_seed(0)
    folder = save_model_pack(
        tmp_path_factory.mktemp("packs") / "tiny",
        MorseModel(tiny_model_config(len(LABELS) + 1)).eval(),
        model_id="tiny-review",
        version="0.0.1",
        preprocessing=tiny_experiment().preprocessing,
        labels=LABELS,
    )
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    meta["calibration"] = CALIBRATION
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    return load_model_pack(folder)


@pytest.fixture(scope="module")
def volume():
    image, _ = ring_slices(4, size=48, seed=3)
    return image


def test_segment_volume_builds_the_review_of_its_own_result(pack, volume):
    result = segment_volume(volume, LPS_1MM, model=pack, device="cpu", maps_uint8=True, review=True, name="rings")
    assert result.review == build_review(result, "rings", settings_from_pack(pack))
    assert result.review["settings"]["threshold"] == CALIBRATION["review_threshold"]  # the pack's calibration
    assert [r["rank"] for r in result.review["regions"]] == list(range(1, len(result.review["regions"]) + 1))
    assert len(result.review["regions"]) >= 2
    assert "review" in result.timings
    assert segment_volume(volume, LPS_1MM, model=pack, device="cpu").review is None  # only when asked


def test_worker_result_carries_the_review(pack, volume, tmp_path, capsys):
    np.save(tmp_path / "input.npy", volume)
    request = {
        "input": "input.npy",
        "ijk_to_ras": LPS_1MM.tolist(),
        "model": str(pack.path),
        "device": "cpu",
        "maps_uint8": True,
        "review": True,
        "output": "result",
    }
    out = worker._execute(request, tmp_path, worker._WorkerState())
    capsys.readouterr()  # the worker's event lines
    result = worker.read_result(out)
    assert result.review is not None and len(result.review["regions"]) >= 2
    # the list read back is the engine's for the arrays read back: nothing lost or rounded on the way
    assert result.review == build_review(result, "input", settings_from_pack(pack))
    assert json.loads((out / "result.json").read_text(encoding="utf-8"))["review"] == result.review
    # without the field (an older caller) no review is computed
    del request["review"]
    request["output"] = "plain"
    assert worker.read_result(worker._execute(request, tmp_path, worker._WorkerState())).review is None
