"""Real 2-process DDP training on the CPU (gloo) through ``torchrun`` and the ``morse train`` command line.

A tiny TransUNet + MORSE (fast-preset heads) model trains on synthetic ring slices stored as an nnU-Net raw folder,
with the paper's AWA schedule, so the rendering head's loss weight is exactly 0 for the first half of the run: its
parameters get zero (but existing) gradients, which DDP must accept with ``find_unused_parameters=False``.

Checked: both ranks hold bit-identical weights at the end; each rank drew its own batches; the logged loss (averaged
over ranks) went down; rank 0 alone wrote the model pack, which holds the same weights; and a run stopped after 4 of
8 iterations and resumed with 2 processes ends with exactly the weights of the uninterrupted run, every rank
continuing its own random stream.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk  # noqa: N813
import torch
import yaml
from morse.config import to_dict
from morse.modelpack import load_model_pack
from safetensors.torch import load_file
from synthetic import ring_slices, tiny_experiment

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
ITERATIONS, STOP = 8, 4

pytestmark = pytest.mark.slow


def _dataset(root: Path) -> Path:
    """Two ring 'volumes' (12 slices of 64×64, 1 mm) in an nnU-Net v2 raw folder."""
    for sub in ("imagesTr", "labelsTr"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        image, label = ring_slices(12, seed=10 + i)
        for array, path in ((image, f"imagesTr/rings{i}_0000.nii.gz"), (label, f"labelsTr/rings{i}.nii.gz")):
            sitk.WriteImage(sitk.GetImageFromArray(array), str(root / path))
    meta = {
        "channel_names": {"0": "synthetic"},
        "labels": {"background": 0, "disc": 1, "ring": 2},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _config(tmp: Path) -> Path:
    cfg = tiny_experiment(ITERATIONS)
    cfg.name = "ddp-rings"
    tree = to_dict(cfg)
    tree["model"]["backbone"] = {
        "name": "transunet",
        "img_size": [64, 64],
        "features": [8, 32, 16, 16, 8, 8, 1, 1, 1],
        "hidden_size": 32,
        "mlp_dim": 64,
        "num_heads": 2,
        "num_layers": 2,
    }
    tree["data"]["dataset"] = str(_dataset(tmp / "data"))
    tree["loss"].update(awa="paper", rend_weight=0.1)
    tree["train"].update(batch_size=2, lr=2e-3, log_every=1, checkpoint_every=STOP)
    path = tmp / "ddp.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    return path


def _torchrun(record: Path, runs: list[dict]) -> dict[str, list[dict]]:
    """Launch 2 processes with torchrun that make ``runs`` in order (see ddp_worker.py); their records per run name."""
    record.mkdir(parents=True, exist_ok=True)
    spec = record / "runs.json"
    spec.write_text(json.dumps(runs))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "MORSESegmentation"), env.get("PYTHONPATH", "")])
    if sys.platform.startswith("linux"):  # both ranks are local: gloo on loopback needs no resolvable host name
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
    # --standalone: a local rendezvous on a free port, so parallel test runs never collide
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(HERE / "ddp_worker.py"), str(record), str(spec)]  # fmt: skip
    # own session: on a time-out the whole group (launcher and workers) is killed, no orphan keeps the CPU busy
    proc = subprocess.Popen(cmd, env=env, cwd=record, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=400)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in 400 s:\n{out[-3000:]}\n{err[-5000:]}")
    assert proc.returncode == 0, f"torchrun failed ({proc.returncode}):\n{out[-4000:]}\n{err[-6000:]}"
    return {
        run["name"]: [json.loads((record / f"{run['name']}-rank{r}.json").read_text()) for r in range(2)]
        for run in runs
    }


def _weights(record: Path, name: str, rank: int) -> dict[str, torch.Tensor]:
    return load_file(str(record / f"{name}-rank{rank}.safetensors"))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Launch 1: the uninterrupted 8-iteration run, then a run stopped after 4. Launch 2: that run resumed."""
    tmp = tmp_path_factory.mktemp("ddp")
    train = ["train", str(_config(tmp)), "--device", "cpu"]
    records = _torchrun(
        tmp / "rec",
        [
            {"name": "straight", "until": None, "argv": [*train, "--out", str(tmp / "straight")]},
            {"name": "first", "until": STOP, "argv": [*train, "--out", str(tmp / "split")]},
        ],
    )
    records |= _torchrun(
        tmp / "rec", [{"name": "resumed", "until": None, "argv": [*train, "--out", str(tmp / "split"), "--resume"]}]
    )
    return tmp, records


def test_two_ranks_train_identical_weights_on_different_data(runs):
    tmp, records = runs
    straight = records["straight"]
    assert [r["world_size"] for r in straight] == [2, 2] and [r["rc"] for r in straight] == [0, 0]
    assert _same(_weights(tmp / "rec", "straight", 0), _weights(tmp / "rec", "straight", 1)) == []
    # every rank draws its own batches (seeded per rank), one per iteration
    b0, b1 = straight[0]["batches"], straight[1]["batches"]
    assert len(b0) == len(b1) == ITERATIONS and all(x != y for x, y in zip(b0, b1))
    # the logged losses are averages over the ranks, hence the same on both (step times are each rank's own)
    losses = [[{k: v for k, v in row.items() if k != "step_time_s"} for row in r["history"]] for r in straight]
    assert losses[0] == losses[1]


def test_loss_goes_down_and_rank0_alone_writes_logs_and_pack(runs):
    tmp, records = runs
    straight = records["straight"]
    with open(tmp / "straight" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, ITERATIONS + 1))
    sup = np.array([float(r["sup"]) for r in rows])
    assert sup[-2:].mean() < 0.9 * sup[:2].mean(), sup
    # the paper's AWA: the rendering loss weighs 0 in the first half (zero gradients are not "unused" for DDP)
    assert [float(r["rend_weight"]) for r in rows][: ITERATIONS // 2] == [0.0] * (ITERATIONS // 2)
    assert float(rows[-1]["rend_weight"]) > 0
    assert straight[0]["pack_dir"] and straight[1]["pack_dir"] is None
    pack = load_model_pack(straight[0]["pack_dir"])
    assert pack.meta["training"]["world_size"] == 2
    weights = _weights(tmp / "rec", "straight", 0)
    assert _same(load_file(str(pack.weights_path)), weights) == []


def test_distributed_resume_continues_exactly(runs):
    tmp, records = runs
    straight, first, resumed = records["straight"], records["first"], records["resumed"]
    assert first[0]["pack_dir"] is None and len(first[0]["batches"]) == STOP
    assert (tmp / "split" / "checkpoint.pt").is_file()
    # each rank picked up its own data stream where it stopped
    for rank in range(2):
        assert first[rank]["batches"] == straight[rank]["batches"][:STOP]
        assert resumed[rank]["batches"] == straight[rank]["batches"][STOP:]
    final = _weights(tmp / "rec", "resumed", 0)
    assert _same(final, _weights(tmp / "rec", "resumed", 1)) == []
    assert _same(final, _weights(tmp / "rec", "straight", 0)) == []
    assert [row["step"] for row in resumed[0]["history"]] == list(range(1, ITERATIONS + 1))
    assert resumed[0]["pack_dir"]
