"""Configuration files: presets, `extends`, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from morse.config import ExperimentConfig, ModelConfig, from_dict, load_experiment, load_yaml_tree, to_dict
from morse.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_presets_state_what_the_paper_and_the_code_do():
    paper = load_experiment(CONFIGS / "presets" / "paper.yaml")
    assert paper.model.features.gating == "dense" and paper.model.features.gating_widths == [256, 256, 256]
    assert paper.model.features.routing.mode == "bernoulli" and paper.model.features.routing.alpha == 0.7
    assert paper.model.point_head.pe.trainable and paper.model.point_head.pe.init == "gaussian"
    assert paper.loss.rend_weight == 0.1 and paper.train.optimizer == "adamw" and paper.train.lr == 5e-4
    assert (paper.model.point_head.train_points, paper.model.point_head.test_points) == (2048, 8192)
    ref = load_experiment(CONFIGS / "presets" / "reference.yaml")
    assert ref.model.features.routing.mode == "uniform_count" and not ref.model.features.routing.renormalize
    assert not ref.model.point_head.pe.trainable and ref.model.point_head.pe.init == "uniform"
    assert ref.model.point_head.hidden == [512, 512, 512] and ref.train.optimizer == "sgd"
    fast = load_experiment(CONFIGS / "presets" / "fast.yaml")
    assert fast.model.features.gating == "pointwise"
    assert fast.loss == paper.loss and fast.model.features.routing == paper.model.features.routing


def test_dataclass_defaults_are_the_paper_preset():
    assert to_dict(ExperimentConfig()) == to_dict(load_experiment(CONFIGS / "presets" / "paper.yaml"))
    assert load_yaml_tree(CONFIGS / "presets" / "paper.yaml") == {}  # so the file has nothing to state


def _leaves(tree: dict, prefix: tuple = ()):
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from _leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


@pytest.mark.parametrize("name", ["fast", "reference"])
def test_presets_state_only_how_they_differ_from_the_paper(name):
    import yaml

    raw = yaml.safe_load((CONFIGS / "presets" / f"{name}.yaml").read_text())
    assert raw.pop("extends") == "paper.yaml"
    paper = to_dict(ExperimentConfig())
    for path, value in _leaves(raw):
        base = paper
        for key in path:
            base = base[key]
        assert value != base, f"{name}.yaml restates the paper's {'.'.join(path)} = {value!r}"


@pytest.mark.parametrize(
    "setting, message",
    [
        ("model: {features: {gating: pointwise}}", r"gating_kernel 3 has no effect with gating: pointwise"),
        ("model: {features: {routing: {max_drop: 2}}}", r"max_drop is only read by mode uniform_count"),
        ("model: {backbone: {img_size: [160, 160]}}", r"img_size has no effect on unet2d"),
        ("model: {backbone: {num_heads: 4}}", r"num_heads is a transformer setting; unet2d ignores it"),
        ("data: {augment: {class_shift_hu: {1: [0.0, 100.0]}}}", r"class_shift_hu has no effect while"),
    ],
)
def test_settings_that_the_others_make_ineffective_are_refused(tmp_path, setting, message):
    path = tmp_path / "c.yaml"
    path.write_text(setting + "\n")
    with pytest.raises(ConfigError, match=message):
        load_experiment(path)


@pytest.mark.parametrize("path", sorted(CONFIGS.rglob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_config_loads(path):
    load_experiment(path)


def test_unknown_keys_and_bad_choices_are_named(tmp_path):
    with pytest.raises(ConfigError, match="expert_dimension"):
        from_dict(ModelConfig, {"features": {"expert_dimension": 3}})
    with pytest.raises(ConfigError, match="'spiral' is not one of"):
        from_dict(ModelConfig, {"features": {"gating": "spiral"}})
    cfg = tmp_path / "a.yaml"
    cfg.write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(cfg)


@pytest.mark.parametrize("section, key", [("data", "val_cases"), ("train", "num_workers"), ("train", "val_every")])
def test_settings_that_do_nothing_are_refused(tmp_path, section, key):
    path = tmp_path / "c.yaml"
    path.write_text(f"extends: {CONFIGS / 'presets' / 'fast.yaml'}\n{section}:\n  {key}: 1\n")
    with pytest.raises(ConfigError, match=rf"^{section}: unknown setting\(s\) {key}; allowed: "):
        load_experiment(path)


def test_extends_merges_and_null_switches_heads_off(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  num_classes: 5\n  features: {expert_dim: 32}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nmodel:\n  point_head: null\n  features: null\n")
    cfg = load_experiment(tmp_path / "child.yaml")
    assert cfg.model.num_classes == 5 and cfg.model.point_head is None and not cfg.model.has_point_head


def test_recorded_config_path_names_no_machine_folder(tmp_path, monkeypatch):
    from morse.train.train_command import _portable_path

    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "x.yaml"
    monkeypatch.chdir(tmp_path)
    assert _portable_path(config) == "configs/x.yaml"
    assert _portable_path("configs/x.yaml") == "configs/x.yaml"
    elsewhere = tmp_path.parent / "other.yaml"
    assert _portable_path(elsewhere) == str(elsewhere)
