"""Training loop: reproducible, resumable to the same weights, writes its logs, curves and model pack."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from morse.config import to_dict
from morse.errors import ConfigError
from morse.modelpack import load_model_pack
from morse.train.augment import augment_batch
from morse.train.sampling import PatchSampler
from morse.train.schedule import poly_lr
from morse.train.trainer import Trainer
from synthetic import LABELS, ring_volume, tiny_experiment


def _cfg(iterations: int, dropout: float = 0.0):
    cfg = tiny_experiment(iterations)
    cfg.model.features.fusion_dropout = dropout  # dropout draws from torch's global generator
    cfg.train.batch_size = 2
    cfg.train.log_every = 1
    cfg.train.checkpoint_every = 3
    return cfg


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def volume():
    return ring_volume(8, seed=3)


def test_same_seed_same_weights_and_resume_continues_exactly(tmp_path, volume):
    straight = Trainer(_cfg(6, dropout=0.2), tmp_path / "a", [volume], LABELS, device="cpu").run()
    again = Trainer(_cfg(6, dropout=0.2), tmp_path / "b", [volume], LABELS, device="cpu").run()
    wa, wb = _weights(straight.model), _weights(again.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # stop after 3 of 6 iterations, resume: the same weights as 6 in one go (generators and optimiser restored)
    partial = Trainer(_cfg(6, dropout=0.2), tmp_path / "c", [volume], LABELS, device="cpu").run(until=3)
    assert partial.pack_dir is None and (tmp_path / "c" / "checkpoint.pt").is_file()
    torch.manual_seed(999)  # a different global random state in the resuming process
    resumed = Trainer(_cfg(6, dropout=0.2), tmp_path / "c", [volume], LABELS, device="cpu", resume=True).run()
    wc = _weights(resumed.model)
    assert all(torch.equal(wa[k], wc[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wc[k])][:3]
    assert [row["step"] for row in resumed.history] == list(range(1, 7))


def test_outputs_of_a_run(tmp_path, volume):
    cfg = _cfg(4)
    cfg.train.seed = 4242
    result = Trainer(cfg, tmp_path / "run", [volume], LABELS, device="cpu").run()
    out = tmp_path / "run"
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert {"lr", "sup", "rend", "total", "step_time_s"} <= set(rows[0])
    assert (out / "loss.png").stat().st_size > 1000 and (out / "checkpoint.pt").is_file()
    pack = load_model_pack(result.pack_dir)
    assert pack.meta["training"]["seed"] == 4242
    assert pack.meta["training"]["config"] == json.loads(json.dumps(to_dict(cfg)))
    assert [lab.name for lab in pack.labels] == ["disc", "ring"]


def test_resume_needs_a_checkpoint_and_config_is_checked(tmp_path, volume):
    with pytest.raises(ConfigError, match="no checkpoint"):
        Trainer(_cfg(2), tmp_path / "none", [volume], LABELS, device="cpu", resume=True).run()
    bad = _cfg(2)
    bad.data.patch_size = [60, 64]
    with pytest.raises(ConfigError, match="multiple of 16"):
        Trainer(bad, tmp_path / "bad", [volume], LABELS, device="cpu")


def test_poly_schedule():
    assert poly_lr(0, 100, 1e-3, 0.0, 0.9) == pytest.approx(1e-3)
    assert poly_lr(50, 100, 1e-3, 1e-4, 0.9) == pytest.approx(9e-4 * 0.5**0.9 + 1e-4)
    assert poly_lr(100, 100, 1e-3, 1e-4, 0.9) == pytest.approx(1e-4)


def test_sampler_oversamples_foreground_and_pads(volume):
    g = torch.Generator().manual_seed(0)
    fg = PatchSampler([volume], [32, 32], foreground_fraction=1.0, generator=g)
    x, y = fg.sample(32)
    assert x.shape == (32, 1, 32, 32) and y.shape == (32, 32, 32) and y.dtype == torch.int64
    assert (y.reshape(32, -1) > 0).any(1).all()  # every patch holds foreground
    big = PatchSampler([volume], [96, 80], foreground_fraction=0.0, generator=g)
    x, y = big.sample(2)
    assert x.shape == (2, 1, 96, 80)  # larger than the 64×64 slices: padded


def test_augmentation_keeps_labels_aligned_with_images(volume):
    g = torch.Generator().manual_seed(1)
    cfg = tiny_experiment().data.augment
    cfg.rotate, cfg.scale, cfg.flip, cfg.rot90, cfg.intensity = 1.0, 1.0, 1.0, 1.0, 0.0
    x = torch.from_numpy(volume.image[:4, None].copy())
    y = torch.from_numpy(volume.label[:4].astype("int64"))
    xa, ya = augment_batch(x, y, cfg, g)
    assert xa.shape == x.shape and ya.shape == y.shape
    # the disc (label 1) is bright: after the same warp, label-1 pixels are still the bright ones
    assert xa[:, 0][ya == 1].mean() > 0.6 and xa[:, 0][ya == 0].mean() < 0.25
