"""Loading R50+ViT-B/16 weights from a local npz (released JAX naming) or safetensors file into TransUNet.

The npz files here are synthetic: random arrays under the key names and shapes of the public ``R50+ViT-B_16.npz``
(HWIO convolution kernels, per-head attention kernels, a class token in front of the position embeddings), written
for the tiny test configuration. The checks compare our modules' outputs with a NumPy re-computation that reads the
npz arrays with JAX's conventions, so a mapping that merely fills tensors of the right shape would fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from morse.errors import ConfigError
from morse.train.trainer import Trainer
from safetensors.torch import save_file
from scipy.special import erf
from synthetic import LABELS, ring_volume, tiny_experiment
from transunet_tiny import tiny_backbone, tiny_backbone_config

WIDTH, UNITS, HIDDEN, HEADS, MLP, LAYERS = 8, (1, 2, 1), 32, 2, 64, 2


def fake_npz(path, grid: int = 4, layers: int = LAYERS, hidden: int = HIDDEN, seed: int = 0, drop: str | None = None,
             extra: dict | None = None):  # fmt: skip
    """A synthetic checkpoint in the released R50+ViT-B_16.npz layout for the tiny configuration."""
    rng = np.random.default_rng(seed)
    a: dict[str, np.ndarray] = {}

    def put(key, *shape, scale=0.2):
        a[key] = (scale * rng.standard_normal(shape)).astype(np.float32)

    put("conv_root/kernel", 7, 7, 3, WIDTH)
    put("gn_root/scale", WIDTH)
    put("gn_root/bias", WIDTH)
    cin = WIDTH
    for s, n in enumerate(UNITS):
        cmid, cout = WIDTH * 2**s, 4 * WIDTH * 2**s
        for u in range(n):
            p = f"block{s + 1}/unit{u + 1}/"
            put(p + "conv1/kernel", 1, 1, cin if u == 0 else cout, cmid)
            put(p + "conv2/kernel", 3, 3, cmid, cmid)
            put(p + "conv3/kernel", 1, 1, cmid, cout)
            for g, c in (("gn1", cmid), ("gn2", cmid), ("gn3", cout)):
                put(p + f"{g}/scale", c)
                put(p + f"{g}/bias", c)
            if u == 0:
                put(p + "conv_proj/kernel", 1, 1, cin, cout)
                put(p + "gn_proj/scale", cout)
                put(p + "gn_proj/bias", cout)
        cin = cout
    hd = hidden // HEADS
    put("embedding/kernel", 1, 1, cin, hidden)
    put("embedding/bias", hidden)
    put("cls", 1, 1, hidden)
    put("Transformer/posembed_input/pos_embedding", 1, 1 + grid * grid, hidden)
    for i in range(layers):
        b = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            put(b + f"{ln}/scale", hidden)
            put(b + f"{ln}/bias", hidden)
        att = b + "MultiHeadDotProductAttention_1/"
        for q in ("query", "key", "value"):
            put(att + f"{q}/kernel", hidden, HEADS, hd)
            put(att + f"{q}/bias", HEADS, hd)
        put(att + "out/kernel", HEADS, hd, hidden)
        put(att + "out/bias", hidden)
        put(b + "MlpBlock_3/Dense_0/kernel", hidden, MLP)
        put(b + "MlpBlock_3/Dense_0/bias", MLP)
        put(b + "MlpBlock_3/Dense_1/kernel", MLP, hidden)
        put(b + "MlpBlock_3/Dense_1/bias", hidden)
    put("Transformer/encoder_norm/scale", hidden)
    put("Transformer/encoder_norm/bias", hidden)
    put("head/kernel", hidden, 5)  # classifier of the ImageNet model: ignored
    put("head/bias", 5)
    put("pre_logits/kernel", hidden, hidden)
    put("pre_logits/bias", hidden)
    if drop:
        del a[drop]
    a.update(extra or {})
    np.savez(path, **a)
    return a


def _layer_norm(x, scale, bias, eps=1e-6):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * scale + bias


def jax_encoder_block(x: np.ndarray, a: dict, i: int) -> np.ndarray:
    """One ViT encoder block computed from the npz arrays as the JAX model does (pre-norm MHA + MLP, exact GELU)."""
    p = f"Transformer/encoderblock_{i}/"
    att = p + "MultiHeadDotProductAttention_1/"
    h = _layer_norm(x, a[p + "LayerNorm_0/scale"], a[p + "LayerNorm_0/bias"])
    q, k, v = (
        np.einsum("ld,dhk->lhk", h, a[att + f"{n}/kernel"]) + a[att + f"{n}/bias"] for n in ("query", "key", "value")
    )
    logits = np.einsum("qhk,shk->hqs", q, k) / np.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("hqs,shk->qhk", w, v)
    x = x + np.einsum("qhk,hkd->qd", o, a[att + "out/kernel"]) + a[att + "out/bias"]
    h = _layer_norm(x, a[p + "LayerNorm_2/scale"], a[p + "LayerNorm_2/bias"])
    h = h @ a[p + "MlpBlock_3/Dense_0/kernel"] + a[p + "MlpBlock_3/Dense_0/bias"]
    h = 0.5 * h * (1 + erf(h / np.sqrt(2)))
    return x + h @ a[p + "MlpBlock_3/Dense_1/kernel"] + a[p + "MlpBlock_3/Dense_1/bias"]


def test_npz_mapping_reproduces_the_jax_computation(tmp_path):
    arrays = fake_npz(tmp_path / "r50vit.npz")
    m = tiny_backbone(64).eval()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    summary = m.load_pretrained(tmp_path / "r50vit.npz")
    assert "backbone tensors loaded from r50vit.npz" in summary
    after = m.state_dict()
    # every encoder parameter took the checkpoint's values; the decoder kept its initialisation
    encoder = [k for k in after if k.startswith(("resnet.", "vit.")) and after[k].is_floating_point()]
    assert encoder and all(not torch.equal(before[k], after[k]) for k in encoder)
    assert all(torch.equal(before[k], after[k]) for k in after if k.startswith(("cup_head", "decoder", "seg_head")))

    # root: weight-standardised 7×7/2 conv with JAX 'SAME' padding (2 before, 3 after on an even size)
    x = torch.randn(1, 3, 32, 32)
    w = torch.from_numpy(arrays["conv_root/kernel"]).permute(3, 2, 0, 1)
    w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True, unbiased=False) + 1e-5)
    expected = F.conv2d(F.pad(x, (2, 3, 2, 3)), w, stride=2)
    assert torch.allclose(m.resnet.root_conv(x), expected, atol=1e-4)
    # GroupNorm affine parameters
    assert torch.equal(m.resnet.stages[1][0].gn_proj.weight, torch.from_numpy(arrays["block2/unit1/gn_proj/scale"]))

    # transformer blocks: query/key/value/out kernels mapped per head, MLP kernels transposed
    tokens = np.random.default_rng(1).standard_normal((16, HIDDEN)).astype(np.float32)
    with torch.inference_mode():
        for i in range(LAYERS):
            ours = m.vit.blocks[i](torch.from_numpy(tokens)[None])[0].numpy()
            np.testing.assert_allclose(ours, jax_encoder_block(tokens, arrays, i), atol=1e-4)
    # 1×1 patch embedding and position embeddings (class token dropped; same 4×4 grid: copied exactly)
    pe = m.vit.patch_embed.weight[:, :, 0, 0].detach().numpy()
    np.testing.assert_array_equal(pe, arrays["embedding/kernel"][0, 0].T)
    expected_pos = arrays["Transformer/posembed_input/pos_embedding"][:, 1:]
    np.testing.assert_array_equal(m.vit.pos_embed.detach().numpy(), expected_pos)


def test_npz_position_embeddings_resized_to_the_model_grid(tmp_path):
    grid = 4
    # the grid part of the embedding: channel 0 = column centre, channel 1 = row centre; class token far off
    centres = (np.arange(grid) + 0.5) / grid
    pos = np.zeros((1, 1 + grid * grid, HIDDEN), np.float32)
    pos[0, 0] = 1000.0
    pos[0, 1:, 0] = np.tile(centres, grid)
    pos[0, 1:, 1] = np.repeat(centres, grid)
    fake_npz(tmp_path / "w.npz", grid=grid, extra={"Transformer/posembed_input/pos_embedding": pos})
    m = tiny_backbone(96)  # 6×6 token grid
    m.load_pretrained(tmp_path / "w.npz")
    got = m.vit.pos_embed.detach().reshape(6, 6, HIDDEN)
    assert got.abs().max() < 2  # the class token did not leak in
    new = torch.from_numpy((np.arange(6) + 0.5) / 6).float()
    inner = slice(1, 5)  # bilinear (cell centres) is exact on a linear function away from the border cells
    assert torch.allclose(got[inner, inner, 0], new[inner].expand(4, 4), atol=1e-6)
    assert torch.allclose(got[inner, inner, 1], new[inner, None].expand(4, 4), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"drop": "block2/unit2/conv2/kernel"}, "missing, e.g. block2/unit2/conv2/kernel"),
        ({"layers": 3}, "encoderblock_2"),
        ({"hidden": 48}, "shape"),
        ({"extra": {"Transformer/posembed_input/pos_embedding": np.zeros((1, 15, HIDDEN), np.float32)}}, "square"),
    ],
)
def test_incompatible_npz_is_refused(tmp_path, kwargs, message):
    fake_npz(tmp_path / "w.npz", **kwargs)
    with pytest.raises(ConfigError, match=message):
        tiny_backbone(64).load_pretrained(tmp_path / "w.npz")


def test_missing_unsupported_and_pickled_files_are_refused(tmp_path):
    m = tiny_backbone(64)
    with pytest.raises(ConfigError, match="never downloaded"):
        m.load_pretrained(tmp_path / "R50+ViT-B_16.npz")
    (tmp_path / "w.pth").write_bytes(b"\x80\x04K\x01.")
    with pytest.raises(ConfigError, match="never pickled"):
        m.load_pretrained(tmp_path / "w.pth")
    # an npz whose array needs unpickling is not read (allow_pickle=False)
    np.savez(tmp_path / "obj.npz", **{"conv_root/kernel": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ConfigError, match=r"not a readable \.npz"):
        m.load_pretrained(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match=r"not a readable \.npz"):
        m.load_pretrained(tmp_path / "junk.npz")


def test_safetensors_state_dict_roundtrip_and_checks(tmp_path):
    torch.manual_seed(3)
    source = tiny_backbone(64).eval()
    # a whole MORSE model's weights (as in a model pack): the backbone's tensors carry the "backbone." prefix
    state = {f"backbone.{k}": v.contiguous() for k, v in source.state_dict().items()}
    state["features.proj.weight"] = torch.zeros(2, 2)
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.manual_seed(4)
    target = tiny_backbone(64).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.inference_mode():
        assert not torch.allclose(source(x).logits, target(x).logits)
        target.load_pretrained(tmp_path / "model.safetensors")
        assert torch.equal(source(x).logits, target(x).logits)

    save_file({"vit.unknown": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ConfigError, match="not TransUNet backbone weights"):
        target.load_pretrained(tmp_path / "bad.safetensors")
    save_file({"vit.norm.weight": torch.zeros(5)}, str(tmp_path / "shape.safetensors"))
    with pytest.raises(ConfigError, match="does not fit"):
        target.load_pretrained(tmp_path / "shape.safetensors")


def _transunet_experiment(tmp_path, pretrained):
    cfg = tiny_experiment(2)
    cfg.model.backbone = tiny_backbone_config(64, pretrained=str(pretrained))
    cfg.train.batch_size, cfg.train.lr, cfg.train.checkpoint_every = 2, 0.0, 1  # lr 0: weights stay as loaded
    return cfg


def test_trainer_loads_pretrained_weights_for_a_new_run_only(tmp_path):
    arrays = fake_npz(tmp_path / "w.npz")
    volume = ring_volume(4, seed=5)
    run = Trainer(_transunet_experiment(tmp_path, tmp_path / "w.npz"), tmp_path / "run", [volume], LABELS, "cpu")
    model = run.run(until=1).model
    expected = torch.from_numpy(arrays["conv_root/kernel"]).permute(3, 2, 0, 1)
    assert torch.equal(model.backbone.resnet.root_conv.weight.detach(), expected)
    # resuming takes the weights from the checkpoint: the pretrained file is not read again (here: it is gone)
    resumed = Trainer(_transunet_experiment(tmp_path, tmp_path / "gone.npz"), tmp_path / "run", [volume], LABELS,
                      "cpu", resume=True).run()  # fmt: skip
    assert torch.equal(resumed.model.backbone.resnet.root_conv.weight.detach(), expected)

    cfg = tiny_experiment(2)
    cfg.model.backbone.pretrained = str(tmp_path / "w.npz")
    with pytest.raises(ConfigError, match="cannot load pretrained"):
        Trainer(cfg, tmp_path / "unet", [volume], LABELS, "cpu").run()
