"""GPU Table 1 runner: the common iteration count, the tars it brings back, and what the GPU machine must not need."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from morse.experiments.gpu_report import markdown, unpack
from morse.experiments.gpu_table1 import config_of, plan_iterations, run_name


def test_the_slowest_row_sets_one_iteration_count_for_all():
    # 0.020 s/step for 480 s → 24 000; the slowest row, not the mean, decides
    assert plan_iterations({"backbone": 0.008, "morse": 0.020}, 480.0) == 24_000
    assert plan_iterations({"morse": 0.012}, 480.0) == 30_000  # capped at the paper's schedule
    assert plan_iterations({"morse": 0.0123}, 100.0) == 8_100  # rounded down to a multiple of 100
    with pytest.raises(RuntimeError, match=r"fewer than 100 iterations.*larger --budget"):
        plan_iterations({"morse-paper": 2.0}, 150.0)
    with pytest.raises(ValueError, match="positive and finite"):
        plan_iterations({"morse": 0.0}, 100.0)


def test_every_row_has_a_config_and_a_table_name():
    from morse.config import load_experiment
    from morse.experiments.gpu_table1 import ROWS
    from morse.experiments.synapse_table1 import ROWS as NAMES
    from morse.train.cache import cache_key

    keys = {json.dumps(cache_key(load_experiment(config_of(row))), sort_keys=True) for row in ROWS}
    assert len(keys) == 1  # one cache serves every row
    assert set(ROWS) <= set(NAMES)
    paper = load_experiment(config_of("morse-paper")).model.features
    assert (paper.gating, paper.gating_kernel, paper.expert_dim) == ("dense", 3, 256)


def test_runs_come_back_as_float16_tars_and_unpack_to_loadable_packs(tmp_path):
    from morse.experiments.gpu_table1 import _pack_run
    from morse.modelpack import load_model_pack, resolve_model_path
    from safetensors.torch import load_file

    name = run_name("morse", 1337)
    run, back, runs = tmp_path / "work" / name, tmp_path / "back", tmp_path / "runs"
    shutil.copytree(resolve_model_path("default"), run / "model")  # a real trained pack stands for the run's output
    (run / "metrics.csv").write_text("step,total\n1,2.0\n")
    back.mkdir()
    tar = _pack_run(run, back)
    size = tar.stat().st_size
    assert size < 0.55 * (run / "model" / "model.safetensors").stat().st_size  # float16 travels, not float32
    record = {"device": "NVIDIA H200", "torch": "2.11.0", "seed": 1337, "budget_s": 480.0, "iterations": 24000,
              "bf16_autocast": True, "calibration_s_per_step": {"morse": 0.0195, "backbone": 0.0081},
              "runs": {"morse": {"name": name, "status": "finished", "wall_time_s": 432.0, "tar": tar.name},
                       "backbone": {"name": run_name("backbone", 1337), "status": "stopped at the deadline"}},
              "total_s": 470.0}  # fmt: skip
    (back / "gpu-runs.json").write_text(json.dumps(record))
    got, jobs = unpack(back, runs)
    assert [j.name for j in jobs] == [name] and jobs[0].extra["row"] == "morse" and jobs[0].done
    pack = runs / name / "model"
    load_model_pack(pack).build()  # verifies the sha256 in model.json against the float32 file written back
    assert "float16" in json.loads((pack / "model.json").read_text())["training"]["returned_as"]
    before, after = load_file(run / "model" / "model.safetensors"), load_file(pack / "model.safetensors")
    assert before.keys() == after.keys() and all(after[k].dtype == before[k].dtype for k in before)
    worst = max(float(((after[k] - before[k]).abs() / before[k].abs().clamp_min(1e-3)).max()) for k in before)
    assert 0 < worst < 1e-3  # rounded to float16 (11 significant bits), not lost
    assert (runs / name / "metrics.csv").is_file()
    text = markdown(got, {})
    assert "**24000 iterations**" in text and "came back as float16" in text
    assert "morse 20 ms, backbone 8 ms" in text
    assert f"| `{name}` | finished | 7.2 min |" in text
    assert "| stopped at the deadline | – |" in text


def test_the_gpu_training_path_needs_no_simpleitk():
    """The GPU machine has torch, MONAI (carried), PyYAML and safetensors, but no SimpleITK: training from the cache
    must not import it."""
    code = (
        "import sys; sys.modules['SimpleITK'] = None\n"
        "import morse.cli, morse.train.train_command, morse.train.dataset, morse.train.trainer, morse.train.cache\n"
        "import morse.experiments.gpu_table1, morse.modelpack, morse.data.synapse8\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
