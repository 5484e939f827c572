"""Uncertainty options: values on known probabilities, and the network passes of MORSE behind them."""

import math

import pytest
import torch
from morse.labels import LabelInfo
from morse.model import MorseModel
from morse.uncertainty import maps
from morse.uncertainty.passes import SoftBatch, mirror_channels, soft_pass, stochastic_routing

from ..synthetic import tiny_model_config


def _logits(*rows):
    """Logits (1, C, 1, N) whose softmax is the given probability rows."""
    p = torch.tensor(rows, dtype=torch.float32).T  # (C, N)
    return torch.log(p.clamp_min(1e-9))[None, :, None, :]


def test_entropy_margin_and_disagreement_on_known_probabilities():
    coarse = _logits([1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0])
    refined = _logits([0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0])
    b = SoftBatch(coarse=coarse, refined=refined, rectified=torch.ones(1, 1, 3, dtype=torch.bool))
    ent = maps.option_map("refined-entropy", b)[0, 0]
    assert (
        ent[0] < 1e-6
        and math.isclose(ent[1], 1.0, abs_tol=1e-5)
        and math.isclose(ent[2], math.log(2) / math.log(3), abs_tol=1e-5)
    )
    assert torch.allclose(maps.option_map("margin", b)[0, 0], torch.tensor([0.0, 1.0, 1.0]), atol=1e-5)
    # the heads disagree completely on the first cell, agree on the others
    assert torch.allclose(maps.option_map("disagreement", b)[0, 0], torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)
    both = maps.option_map("entropy+disagreement", b)[0, 0]
    assert torch.allclose(both, torch.maximum(ent, torch.tensor([1.0, 0.0, 0.0])), atol=1e-6)


def test_temperature_raises_entropy_of_confident_logits():
    b = SoftBatch(
        coarse=_logits([0.9, 0.1]), refined=_logits([0.9, 0.1]), rectified=torch.zeros(1, 1, 1, dtype=torch.bool)
    )
    assert maps.option_map("refined-entropy", b, 2.0) > maps.option_map("refined-entropy", b, 1.0)


def test_options_needing_passes_that_did_not_run_are_refused():
    b = SoftBatch(
        coarse=_logits([0.9, 0.1]), refined=_logits([0.9, 0.1]), rectified=torch.zeros(1, 1, 1, dtype=torch.bool)
    )
    with pytest.raises(ValueError, match="Monte-Carlo"):
        maps.option_map("mc-mutual", b)
    with pytest.raises(ValueError, match="mirrored"):
        maps.option_map("flip-entropy", b)
    with pytest.raises(ValueError, match="unknown"):
        maps.option_map("nonsense", b)
    with pytest.raises(ValueError, match="extra network passes"):
        maps.from_logits(b.coarse, b.refined, b.rectified, "mc-entropy", 1.0)


def test_mirror_swaps_left_and_right_organs_only():
    labels = [
        LabelInfo(1, "liver", (1, 0, 0)),
        LabelInfo(2, "kidney_left", (0, 1, 0)),
        LabelInfo(3, "kidney_right", (0, 0, 1)),
    ]
    assert mirror_channels(labels) == [0, 1, 3, 2]


def _net(mode="bernoulli"):
    torch.manual_seed(0)
    cfg = tiny_model_config()
    cfg.features.routing.mode = mode
    cfg.features.routing.alpha = 0.5
    net = MorseModel(cfg).eval()
    with torch.no_grad():  # the head's output layer starts near zero; a trained head answers with some strength
        for part in net.head.predictor.parts:
            part.weight.normal_(0.0, 1.0)
    return net


def test_soft_pass_matches_predict_and_monte_carlo_varies_only_at_rendered_cells():
    net = _net()
    x = torch.rand(2, 1, 32, 32)
    pred = net.predict(x)
    b = soft_pass(net, x, samples=6, flip=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(b.refined, pred.refined) and torch.equal(b.rectified, pred.rectified)
    off = ~b.rectified
    plain = torch.softmax(b.refined.float(), dim=1)
    assert torch.allclose(b.mc_probs.permute(0, 2, 3, 1)[off], plain.permute(0, 2, 3, 1)[off])
    assert (b.mc_mutual[off] == 0).all()
    assert b.mc_mutual[b.rectified].max() > 1e-5  # dropping experts changes the head's answer somewhere
    # the routing is back to deterministic afterwards, and the mirrored pass is the network on mirrored slices
    assert not net.features.training
    assert torch.allclose(b.flip_refined, net.predict(x.flip(-1)).refined.flip(-1))


def test_without_stochastic_routing_the_mutual_information_is_zero():
    net = _net(mode="none")
    b = soft_pass(net, torch.rand(1, 1, 32, 32), samples=3)
    assert b.mc_mutual.abs().max() < 1e-6


def test_stochastic_routing_touches_only_the_smoe_flag():
    net = _net()
    with stochastic_routing(net.features):
        assert net.features.training
        assert not net.backbone.training and not any(m.training for m in net.features.children())
    assert not net.features.training


def test_cost_ratios_add_each_options_passes_to_the_network():
    seconds = {"network": 2.0, "mc": 1.0, "flip": 2.0}
    cost = maps.cost_ratios(seconds, dict.fromkeys(maps.OPTIONS, 0.2))
    assert cost["refined-margin"] == pytest.approx(1.1)  # its map only
    assert cost["mc-entropy"] == pytest.approx(1.6)  # + the routing samples
    assert cost["flip-entropy"] == pytest.approx(2.1)  # + the mirrored pass
    assert set(cost) == set(maps.OPTIONS)
