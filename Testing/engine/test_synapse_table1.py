"""The Table 1 report of morse.experiments.synapse_table1: means and spreads over seeds, refinement deltas."""

from __future__ import annotations

import json

from morse.experiments.ablation import ORGANS
from morse.experiments.synapse_table1 import invented, refinement_vs_seed_noise, scored, table


def _summary(dsc: float, hd: float, fp: int = 0) -> dict:
    return {
        "per_class": {o: {"dsc": dsc, "hd95": hd} for o in ORGANS},
        "mean": {"dsc": dsc, "hd95": hd},
        "false_positives": {o: (fp if o == "liver" else 0) for o in ORGANS},
        "cases": 12,
    }


def _entry(row: str, seed: int, coarse: float, refined: float, fp: int = 0) -> dict:
    scores = {"mm/default": {"coarse": _summary(coarse, 20.0, fp), "refined": _summary(refined, 10.0, fp)}}
    return {"row": row, "seed": seed, "parameters": 1e6, "training_wall_time_s": 600.0,
            "test": {"scores": scores}, "validation": {"scores": scores}}  # fmt: skip


def test_rows_average_their_seeds_with_the_spread():
    results = {
        "b1": _entry("backbone", 1, 0.60, 0.60),
        "b2": _entry("backbone", 2, 0.70, 0.70),
        "m1": _entry("morse", 1, 0.65, 0.69, fp=3),
    }
    lines = table(results, "test", "mm/default").splitlines()
    assert lines[2].startswith("| (a) UNet (backbone alone) | 2 | coarse | 65.0 ± 7.1 | 20.0 ± 0.0 | 65.0 |")
    assert lines[5].startswith("| (e) MORSE (SMoE + IAR) | 1 | refined | 69.0 | 10.0 | 69.0 |")
    notes = refinement_vs_seed_noise(results)
    assert "(e) MORSE (SMoE + IAR): refined − coarse +4.0 mean DSC points" in notes
    assert "seed spread, (a) UNet (backbone alone) coarse: standard deviation 7.1 DSC points" in notes
    assert "| `m1` | 3 | 3 |" in invented(results)


def test_the_refinement_gain_gets_its_own_spread_over_seeds():
    results = {
        "m1": _entry("morse", 1, 0.60, 0.64),
        "m2": _entry("morse", 2, 0.70, 0.71),
        "m3": _entry("morse", 3, 0.62, 0.63),
    }
    notes = refinement_vs_seed_noise(results)
    # gains +4, +1, +1: mean 2.0, sample standard deviation 1.7; the outputs' own seed spread is larger (5.3, 4.4)
    assert "refined − coarse +4.0, +1.0, +1.0 mean DSC points (per seed, +2.0 ± 1.7 over the 3 seeds)" in notes
    assert "(e) MORSE (SMoE + IAR) coarse: standard deviation 5.3 DSC points" in notes


def test_scored_keeps_every_scoring_and_writes_undefined_values_as_null():
    report = {
        "units": "mm",
        "convention": "default",
        "summary": {"coarse": {**_summary(0.5, float("nan")), "counts": {}}, "refined": _summary(0.6, 3.0)},
        "variants": {"voxel/paper": {"coarse": _summary(0.4, 2.0), "refined": _summary(0.5, 1.0)}},
    }
    out = scored(report)
    assert list(out) == ["mm/default", "voxel/paper"]
    assert out["mm/default"]["coarse"]["mean"]["hd95"] is None and "counts" not in out["mm/default"]["coarse"]
    assert out["voxel/paper"]["refined"]["mean"]["dsc"] == 0.5


def test_runs_recorded_elsewhere_keep_their_numbers_in_the_report(tmp_path):
    from morse.experiments.synapse_table1 import make_jobs, recorded, write_markdown

    report = tmp_path / "synapse-table1.md"
    assert recorded(report.with_suffix(".json")) == {}
    entry = _entry("backbone", 1337, 0.60, 0.60)
    for split in ("test", "validation"):
        entry[split]["scores"]["voxel/paper"] = entry[split]["scores"]["mm/default"]
    results = {"unet2d-backbone-s1337": entry}
    report.with_suffix(".json").write_text(json.dumps(results), encoding="utf-8")
    assert recorded(report.with_suffix(".json")) == results
    write_markdown(report, recorded(report.with_suffix(".json")), make_jobs(tmp_path / "no-runs-here"))
    text = report.read_text(encoding="utf-8")
    assert f"1 of {len(make_jobs(tmp_path))} planned runs finished" in text
    assert "| (a) UNet (backbone alone) | 1 | coarse | 60.0 |" in text


def test_a_recorded_run_whose_folder_is_not_here_is_not_evaluated_again(tmp_path):
    from morse.experiments.synapse_table1 import collect, make_jobs

    jobs = make_jobs(tmp_path / "runs")
    shipped = jobs[0]  # the shipped pack: always finished, its run folder is elsewhere
    assert shipped.done and not shipped.out.exists()
    # no data folder at all: evaluating it would fail
    assert collect([shipped], str(tmp_path / "no-data"), {shipped.name: {"row": "morse"}}) == {}
