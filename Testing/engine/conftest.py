"""Fixtures of the engine suite: one small MORSE model trained for real on the synthetic ring task (session-wide)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def trained_rings(tmp_path_factory):
    """(TrainResult, model pack path) of the tiny model trained on the ring task (about a minute on 2 cores)."""
    import torch
    from morse.train.trainer import Trainer
    from synthetic import LABELS, ring_volume, tiny_experiment

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("rings-run")
    cfg = tiny_experiment()
    result = Trainer(cfg, out, [ring_volume(64, seed=0)], LABELS, device="cpu").run()
    return result, result.pack_dir
