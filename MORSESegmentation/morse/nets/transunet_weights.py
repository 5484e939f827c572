"""Loading user-supplied encoder weights into :class:`morse.nets.transunet.TransUNetBackbone` from a LOCAL file.

Two formats, both read without unpickling (``numpy.load(allow_pickle=False)``, ``safetensors``):

- ``.npz`` with the key names of the public JAX checkpoint ``R50+ViT-B_16.npz`` (ImageNet-21k), e.g.
  ``conv_root/kernel`` (7, 7, 3, 64) HWIO, ``block2/unit1/gn_proj/scale``, ``embedding/kernel`` (1, 1, 1024, 768),
  ``Transformer/posembed_input/pos_embedding`` (1, 1 + 14·14, 768) with a class token first,
  ``Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel`` (768, 12, 64),
  ``.../out/kernel`` (12, 64, 768), ``.../MlpBlock_3/Dense_0/kernel`` (768, 3072), ``.../LayerNorm_0/scale``,
  ``Transformer/encoder_norm/scale``. The ResNet trunk, the 1×1 patch embedding, the position embeddings and every
  transformer layer must all be present and match the configured sizes; the classifier (``head/*``, ``pre_logits/*``)
  and the class token are ignored. The decoder and segmentation head keep their initialisation.
- ``.safetensors`` with this module's own parameter names (``resnet.…``, ``vit.…``, ``cup_head.…``), optionally
  prefixed ``backbone.`` — e.g. the ``model.safetensors`` of a MORSE model pack. Every tensor in the file must belong
  to the backbone; tensors the file lacks keep their initialisation.

Position embeddings for another token grid (e.g. the 14×14 grid of a 224-pixel checkpoint loaded into a 256-pixel
model, 16×16) are resized bilinearly by :func:`resize_pos_embed`, which the network also uses for inputs of another
size. This module knows the network only through the instance it is given, so :mod:`morse.nets.transunet` can import
it without a cycle.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from ..errors import ConfigError

log = logging.getLogger(__name__)

_IGNORED_NPZ = re.compile(r"^(cls|head/.*|pre_logits/.*)$")


def _conv(a: np.ndarray) -> np.ndarray:
    """HWIO (JAX) → OIHW (torch)."""
    return a.transpose(3, 2, 0, 1)


def npz_key_map(backbone) -> dict[str, tuple[str | tuple[str, ...], Callable]]:
    """Our parameter name → (npz key, converter) for every encoder parameter of ``backbone``.

    The position embedding is handled separately (class token, grid resize).
    """
    m: dict[str, tuple[str | tuple[str, ...], Callable]] = {
        "resnet.root_conv.weight": ("conv_root/kernel", _conv),
        "resnet.root_gn.weight": ("gn_root/scale", np.asarray),
        "resnet.root_gn.bias": ("gn_root/bias", np.asarray),
        "vit.patch_embed.weight": ("embedding/kernel", _conv),
        "vit.patch_embed.bias": ("embedding/bias", np.asarray),
        "vit.norm.weight": ("Transformer/encoder_norm/scale", np.asarray),
        "vit.norm.bias": ("Transformer/encoder_norm/bias", np.asarray),
    }
    for s, stage in enumerate(backbone.resnet.stages):
        for u, unit in enumerate(stage):
            src, dst = f"block{s + 1}/unit{u + 1}", f"resnet.stages.{s}.{u}"
            names = ["1", "2", "3"] + (["_proj"] if unit.conv_proj is not None else [])
            for n in names:
                m[f"{dst}.conv{n}.weight"] = (f"{src}/conv{n}/kernel", _conv)
                m[f"{dst}.gn{n}.weight"] = (f"{src}/gn{n}/scale", np.asarray)
                m[f"{dst}.gn{n}.bias"] = (f"{src}/gn{n}/bias", np.asarray)
    hidden = backbone.vit.norm.normalized_shape[0]

    def heads_in(a):  # (hidden, heads, head_dim) → Linear weight (heads·head_dim, hidden)
        return a.reshape(a.shape[0], -1).T

    def heads_out(a):  # (heads, head_dim, hidden) → Linear weight (hidden, heads·head_dim)
        return a.reshape(-1, a.shape[-1]).T

    for i in range(len(backbone.vit.blocks)):
        src, dst = f"Transformer/encoderblock_{i}", f"vit.blocks.{i}"
        m[f"{dst}.norm1.weight"] = (f"{src}/LayerNorm_0/scale", np.asarray)
        m[f"{dst}.norm1.bias"] = (f"{src}/LayerNorm_0/bias", np.asarray)
        m[f"{dst}.norm2.weight"] = (f"{src}/LayerNorm_2/scale", np.asarray)
        m[f"{dst}.norm2.bias"] = (f"{src}/LayerNorm_2/bias", np.asarray)
        att = f"{src}/MultiHeadDotProductAttention_1"
        # MONAI's fused qkv Linear stacks [q; k; v] along the output axis, heads-major inside each (its einops pattern
        # "b h (qkv l d)"), which is the JAX kernel's (heads, head_dim) order flattened.
        m[f"{dst}.attn.qkv.weight"] = (
            (f"{att}/query/kernel", f"{att}/key/kernel", f"{att}/value/kernel"),
            lambda q, k, v: np.concatenate([heads_in(q), heads_in(k), heads_in(v)], axis=0),
        )
        m[f"{dst}.attn.qkv.bias"] = (
            (f"{att}/query/bias", f"{att}/key/bias", f"{att}/value/bias"),
            lambda q, k, v: np.concatenate([q.reshape(-1), k.reshape(-1), v.reshape(-1)]),
        )
        m[f"{dst}.attn.out_proj.weight"] = (f"{att}/out/kernel", heads_out)
        m[f"{dst}.attn.out_proj.bias"] = (f"{att}/out/bias", lambda a: a.reshape(hidden))
        m[f"{dst}.mlp.linear1.weight"] = (f"{src}/MlpBlock_3/Dense_0/kernel", np.transpose)
        m[f"{dst}.mlp.linear1.bias"] = (f"{src}/MlpBlock_3/Dense_0/bias", np.asarray)
        m[f"{dst}.mlp.linear2.weight"] = (f"{src}/MlpBlock_3/Dense_1/kernel", np.transpose)
        m[f"{dst}.mlp.linear2.bias"] = (f"{src}/MlpBlock_3/Dense_1/bias", np.asarray)
    return m


_POS_KEY = "Transformer/posembed_input/pos_embedding"


def _grid_of(tokens: int) -> tuple[int, int] | None:
    if tokens < 1:
        return None
    side = math.isqrt(tokens)
    return (side, side) if side * side == tokens else None


def state_from_npz(path: Path, backbone) -> dict[str, torch.Tensor]:
    """Encoder tensors in our naming from a released-format npz (see the module doc); strict about coverage."""
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ConfigError(f"backbone.pretrained: {path} is not a readable .npz file ({exc})") from None
    mapping = npz_key_map(backbone)
    state: dict[str, torch.Tensor] = {}
    missing: list[str] = []
    used: set[str] = {_POS_KEY}
    for ours, (keys, convert) in mapping.items():
        keys = keys if isinstance(keys, tuple) else (keys,)
        absent = [k for k in keys if k not in arrays]
        if absent:
            missing.extend(absent)
            continue
        used.update(keys)
        try:
            value = convert(*(arrays[k].astype(np.float32) for k in keys))
        except ValueError as exc:  # a reshape that does not fit: another architecture
            raise ConfigError(f"backbone.pretrained: {path}: {keys[0]} has an unexpected shape ({exc})") from None
        state[ours] = torch.from_numpy(np.ascontiguousarray(value))
    if _POS_KEY in arrays:
        pos = arrays[_POS_KEY].astype(np.float32)
        if pos.ndim != 3 or pos.shape[0] != 1:
            raise ConfigError(f"backbone.pretrained: {path}: {_POS_KEY} has shape {pos.shape}, expected (1, tokens, C)")
        # JAX checkpoints put the class token first: 1 + gh·gw tokens. TransUNet has no class token.
        if _grid_of(pos.shape[1]) is None and _grid_of(pos.shape[1] - 1) is not None:
            pos = pos[:, 1:]
        state["vit.pos_embed"] = torch.from_numpy(np.ascontiguousarray(pos))
    else:
        missing.append(_POS_KEY)
    if missing:
        raise ConfigError(
            f"backbone.pretrained: {path} is not an R50+ViT-B/16 checkpoint for this configuration: "
            f"{len(missing)} expected array(s) missing, e.g. {', '.join(missing[:4])}"
        )
    extra = sorted(k for k in arrays if k not in used and not _IGNORED_NPZ.match(k))
    if extra:
        raise ConfigError(
            f"backbone.pretrained: {path} holds {len(extra)} encoder array(s) this configuration has no place for "
            f"(e.g. {', '.join(extra[:4])}); check num_layers and the ResNet stage depths"
        )
    return state


def state_from_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"backbone.pretrained: {path} is not a readable safetensors file ({exc})") from None
    if any(k.startswith("backbone.") for k in raw):
        # a whole MORSE model: keep the backbone's tensors only
        raw = {k[len("backbone.") :]: v for k, v in raw.items() if k.startswith("backbone.")}
    return raw


def resize_pos_embed(pos: Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Learned position embeddings ``(1, gh·gw, C)`` of a ``old_grid`` token grid, bilinearly resized to ``new_grid``.

    The tokens are row-major over the grid (row = image height). Bilinear with ``align_corners=False`` treats each token
    as the centre of its cell, so a grid covering the same field of view at another density is sampled consistently.
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    c = pos.shape[-1]
    grid = pos.reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=tuple(new_grid), mode="bilinear", align_corners=False).to(pos.dtype)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], c)


def apply_state(backbone, state: dict[str, torch.Tensor], source: str) -> tuple[int, int]:
    """Copy ``state`` into ``backbone``; position embeddings of another grid are resized. Returns (loaded, total)."""
    own = backbone.state_dict()
    unknown = sorted(k for k in state if k not in own)
    if unknown:
        raise ConfigError(
            f"backbone.pretrained: {source} has {len(unknown)} tensor(s) that are not TransUNet backbone weights "
            f"(e.g. {', '.join(unknown[:4])})"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k != "vit.pos_embed" and v.shape != own[k].shape
    ]
    if wrong:
        raise ConfigError(
            f"backbone.pretrained: {source} does not fit this TransUNet configuration ({len(wrong)} shape "
            f"mismatch(es), e.g. {'; '.join(wrong[:3])}); check hidden_size, mlp_dim, num_layers and features"
        )
    pos = state.get("vit.pos_embed")
    if pos is not None:
        target = own["vit.pos_embed"]
        old = _grid_of(pos.shape[1]) if pos.ndim == 3 else None
        if old is None or pos.shape[2] != target.shape[2]:
            raise ConfigError(
                f"backbone.pretrained: {source}: position embeddings {tuple(pos.shape)} cannot be resized to "
                f"{tuple(target.shape)} (need a square token grid of width {target.shape[2]})"
            )
        state = {**state, "vit.pos_embed": resize_pos_embed(pos, old, backbone.vit.grid)}
        if old != backbone.vit.grid:
            log.info("position embeddings resized from a %d×%d to a %d×%d token grid", *old, *backbone.vit.grid)
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v.to(own[k].dtype))  # state_dict tensors share storage with the parameters
    return len(state), len(own)


def load_transunet_weights(backbone, path: str | Path) -> str:
    """Load ``path`` (``.npz`` or ``.safetensors``, local only) into ``backbone``; returns a summary line."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"backbone.pretrained: {path} does not exist. Weights are never downloaded: place the file (e.g. "
            "R50+ViT-B_16.npz or a .safetensors state dict) on this machine and give its path."
        )
    suffix = path.suffix.lower()
    if suffix == ".npz":
        state = state_from_npz(path, backbone)
    elif suffix == ".safetensors":
        state = state_from_safetensors(path)
    else:
        raise ConfigError(
            f"backbone.pretrained: {path}: unsupported format {suffix or '(none)'}; use .npz (R50+ViT-B_16 naming) or "
            ".safetensors (never pickled .pth/.bin files)"
        )
    if not state:
        raise ConfigError(f"backbone.pretrained: {path} holds no TransUNet weights")
    loaded, total = apply_state(backbone, state, str(path))
    summary = f"TransUNet: {loaded} of {total} backbone tensors loaded from {path.name}"
    log.info(summary)
    return summary
