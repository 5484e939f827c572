"""Point operations of the rendering head, for 2D and 3D alike.

Conventions (shared by every function here):

- Feature maps are channel-first tensors ``(B, C, *S)`` with ``S = (H, W)`` or ``(D, H, W)``; features *at points*
  are channels-last ``(B, P, C)`` so that the per-point MLPs are plain matrix products on contiguous rows.
- Point coordinates are continuous, normalised to ``[0, 1]`` over the map's extent, shape ``(B, P, n)`` with the
  **fastest axis first** (x = W axis, then y = H, then z = D), the order of ``torch.nn.functional.grid_sample``.
  The centre of cell ``(k, j, i)`` is ``((i + 0.5) / W, (j + 0.5) / H, (k + 0.5) / D)``.
- Interpolation follows ``interpolate(..., align_corners=False)`` with border clamping, so sampling a map at a
  cell centre returns that cell exactly, and sampling a low-resolution map at a high-resolution cell centre returns
  what ``interpolate`` would have produced there.
- Flat indices run over ``prod(S)`` in C order (x fastest); :func:`indices_to_coords` unravels them over **all** axes
  (the released 3D code wrapped them modulo H·W, which put refined logits into the wrong depth slab).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor


def uncertainty(logits: Tensor, dim: int = 1) -> Tensor:
    """Second-largest minus largest logit over the class axis ``dim`` (removed); ≤ 0, higher = less sure.

    A running top-2 over the (few) classes: elementwise max/min passes are several times faster than ``topk`` along
    a short, strided class axis, and this runs on every pixel of every slice at inference.
    """
    first = logits.select(dim, 0)
    second = torch.full_like(first, float("-inf"))
    for c in range(1, logits.shape[dim]):
        value = logits.select(dim, c)
        second = torch.maximum(second, torch.minimum(first, value))
        first = torch.maximum(first, value)
    return second - first


def cells(feature: Tensor) -> Tensor:
    """``(B, C, *S)`` → contiguous rows ``(B, N, C)``, one per cell (N = prod(S), C order)."""
    return feature.flatten(2).transpose(1, 2).contiguous()


def _axis_lookup(coords: Tensor, sizes: tuple[int, ...]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """Per spatial axis (in tensor order D, H, W): lower index, upper index, weight of the upper one. Each (B, P)."""
    out = []
    for axis, size in enumerate(sizes):
        c = coords[..., len(sizes) - 1 - axis]  # tensor axis `axis` is coordinate n-1-axis (x is last axis)
        src = (c * size - 0.5).clamp(0, size - 1)
        lo = src.floor().long().clamp(max=size - 1)
        hi = (lo + 1).clamp(max=size - 1)
        out.append((lo, hi, src - lo.to(src.dtype)))
    return out


def _flat_index(per_axis: list[Tensor], sizes: tuple[int, ...]) -> Tensor:
    index = per_axis[0]
    for idx, size in zip(per_axis[1:], sizes[1:]):
        index = index * size + idx
    return index


def take_rows(rows: Tensor, index: Tensor, batch: Tensor | None = None) -> Tensor:
    """``rows (B, N, C)`` at per-batch row indices ``index (B, M)`` → ``(B, M, C)``.

    ``batch (M,)``: ``index (1, M)`` is one ragged set of rows taken from all B maps, row ``m`` from map
    ``batch[m]`` → ``(1, M, C)``.
    """
    b, n, c = rows.shape
    offset = torch.arange(b, device=index.device).unsqueeze(1) * n if batch is None else (batch * n).unsqueeze(0)
    return rows.reshape(b * n, c).index_select(0, (index + offset).reshape(-1)).reshape(index.shape[0], -1, c)


def sample_rows(
    rows: Tensor,
    sizes: tuple[int, ...],
    coords: Tensor,
    mode: str = "linear",
    fn: Callable[[Tensor], Tensor] | None = None,
    batch: Tensor | None = None,
) -> Tensor:
    """Sample a map stored as rows ``(B, N, C)`` over grid ``sizes`` at ``coords (B, P, n)`` → ``(B, P, C')``.

    ``batch (P,)``: ``coords (1, P, n)`` is one ragged point set over all B maps, point ``p`` on map ``batch[p]``
    (→ ``(1, P, C')``); slices needing different numbers of points then cost no padding.

    mode ``linear`` is bilinear (2D) / trilinear (3D); ``nearest`` picks the containing cell.
    ``fn``, a per-cell function on channels-last tensors ``(B, M, C) -> (B, M, C')`` (e.g. an expert MLP), is applied
    to the gathered corner cells *before* blending, which equals applying it to the whole map and then interpolating,
    at a cost of ``2^n·P`` evaluations instead of ``prod(S)``.
    """
    sizes = tuple(sizes)
    b, p = coords.shape[:2]
    if mode == "nearest":
        per_axis = []
        for axis, size in enumerate(sizes):
            x = coords[..., len(sizes) - 1 - axis]
            per_axis.append((x * size).floor().long().clamp(0, size - 1))
        values = take_rows(rows, _flat_index(per_axis, sizes), batch)
        return fn(values) if fn is not None else values
    if mode != "linear":
        raise ValueError(f"unknown sampling mode {mode!r}")
    lookup = _axis_lookup(coords, sizes)
    corners = list(itertools.product((0, 1), repeat=len(sizes)))
    indices, weights = [], []
    for corner in corners:
        per_axis = [lookup[a][1] if bit else lookup[a][0] for a, bit in enumerate(corner)]
        w = torch.ones_like(lookup[0][2])
        for a, bit in enumerate(corner):
            frac = lookup[a][2]
            w = w * (frac if bit else 1 - frac)
        indices.append(_flat_index(per_axis, sizes))
        weights.append(w)
    corner_batch = None if batch is None else batch.repeat(len(corners))
    gathered = take_rows(rows, torch.cat(indices, dim=1), corner_batch)  # (B, K·P, C)
    if fn is not None:
        gathered = fn(gathered)
    gathered = gathered.reshape(b, len(corners), p, gathered.shape[-1])
    out = gathered[:, 0] * weights[0].to(gathered.dtype).unsqueeze(-1)
    for k in range(1, len(corners)):
        out.addcmul_(gathered[:, k], weights[k].to(gathered.dtype).unsqueeze(-1))
    return out


def sample_points(
    feature: Tensor,
    coords: Tensor,
    mode: str = "linear",
    fn: Callable[[Tensor], Tensor] | None = None,
    batch: Tensor | None = None,
) -> Tensor:
    """Sample a channel-first map ``(B, C, *S)`` at ``coords (B, P, n)`` → channels-last ``(B, P, C')``
    (see :func:`sample_rows`)."""
    return sample_rows(cells(feature), tuple(feature.shape[2:]), coords, mode=mode, fn=fn, batch=batch)


def most_uncertain_indices(logits: Tensor, num_points: int) -> Tensor:
    """Flat indices ``(B, N)`` of the ``num_points`` most uncertain cells of ``logits (B, C, *S)``, most first."""
    u = uncertainty(logits).flatten(1)
    return u.topk(min(num_points, u.shape[1]), dim=1).indices


def indices_to_coords(indices: Tensor, spatial_shape: tuple[int, ...]) -> Tensor:
    """Cell-centre coordinates ``(B, N, n)`` (x first, in [0, 1]) of flat C-order indices ``(B, N)`` over ``S``."""
    coords = []
    rest = indices
    for size in reversed(spatial_shape):  # x (last axis) first
        coords.append(((rest % size).to(torch.float32) + 0.5) / size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.stack(coords, dim=-1)


def _is_channels_last(feature: Tensor) -> bool:
    fmt = torch.channels_last if feature.dim() == 4 else torch.channels_last_3d if feature.dim() == 5 else None
    return fmt is not None and feature.shape[1] > 1 and feature.is_contiguous(memory_format=fmt)


def gather_cells(feature: Tensor, indices: Tensor) -> Tensor:
    """Values ``(B, N, C)`` (channels-last) of ``feature (B, C, *S)`` at flat indices ``(B, N)``."""
    if _is_channels_last(feature):  # its cells are already rows: gather rows, no transposed copy of the map
        return take_rows(cells(feature), indices)
    b, c = feature.shape[:2]
    return feature.reshape(b, c, -1).gather(2, indices.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)


def scatter_cells(feature: Tensor, indices: Tensor, values: Tensor) -> Tensor:
    """Copy of ``feature (B, C, *S)`` (same memory format) whose cells at flat ``indices (B, N)`` are replaced by
    ``values (B, N, C)``."""
    return scatter_cells_(feature.clone(), indices, values)


def scatter_cells_(feature: Tensor, indices: Tensor, values: Tensor) -> Tensor:
    """:func:`scatter_cells` in place; returns ``feature``."""
    b, c = feature.shape[:2]
    rows = cells(feature) if _is_channels_last(feature) else None
    if rows is not None and rows.data_ptr() == feature.data_ptr():  # rows are a view: write them directly
        offset = torch.arange(b, device=indices.device).unsqueeze(1) * rows.shape[1]
        rows.view(-1, c).index_copy_(0, (indices + offset).reshape(-1), values.reshape(-1, c).to(feature.dtype))
        return feature
    flat = feature.reshape(b, c, -1)  # a view when feature is contiguous, else a copy written back below
    flat.scatter_(2, indices.unsqueeze(1).expand(-1, c, -1), values.transpose(1, 2).to(flat.dtype))
    if flat.data_ptr() != feature.data_ptr():
        feature.copy_(flat.view(feature.shape))
    return feature


def gather_ragged(feature: Tensor, batch: Tensor, index: Tensor) -> Tensor:
    """Values ``(P, C)`` of ``feature (B, C, *S)`` (either memory format) at cells ``index (P,)`` (flat, C order)
    of maps ``batch (P,)``."""
    return feature.flatten(2)[batch, :, index]


def scatter_ragged_(feature: Tensor, batch: Tensor, index: Tensor, values: Tensor) -> Tensor:
    """Replace, in place, the cells ``index (P,)`` of maps ``batch (P,)`` of ``feature (B, C, *S)`` by
    ``values (P, C)``; returns ``feature``."""
    flat = feature.view(*feature.shape[:2], -1)  # a view (never a copy) in both memory formats
    flat[batch, :, index] = values.to(feature.dtype)
    return feature


def random_coords(batch: int, num: int, dims: int, generator: torch.Generator | None, device) -> Tensor:
    """Uniform coordinates ``(B, num, dims)`` in [0, 1), drawn from ``generator`` (on its device) then moved."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(batch, num, dims, generator=generator, device=gen_device).to(device)


def select_uncertain(candidates: Tensor, candidate_uncertainty: Tensor, num: int) -> Tensor:
    """The ``num`` candidates ``(B, M, n)`` with the highest uncertainty ``(B, M)`` → ``(B, num, n)``."""
    idx = candidate_uncertainty.topk(num, dim=1).indices
    return candidates.gather(1, idx.unsqueeze(-1).expand(-1, -1, candidates.shape[-1]))


@torch.no_grad()
def select_training_points(
    coarse_logits: Tensor,
    num_points: int,
    oversample: int,
    importance: float,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PointRend's training-time point choice on ``coarse_logits (B, C, *S)`` → coordinates ``(B, num_points, n)``.

    ``oversample·num_points`` uniform candidates; the logits are interpolated *at* the candidates before the
    uncertainty is taken (interpolating an uncertainty map is wrong between two confident cells of opposite class);
    the ``importance·num_points`` most uncertain candidates are kept and the rest are fresh uniform points.
    """
    b, dims = coarse_logits.shape[0], coarse_logits.dim() - 2
    device = coarse_logits.device
    num_important = round(importance * num_points)
    num_candidates = max(oversample * num_points, num_important)
    candidates = random_coords(b, num_candidates, dims, generator, device)
    cand_unc = uncertainty(sample_points(coarse_logits.float(), candidates), dim=-1)
    chosen = select_uncertain(candidates, cand_unc, num_important)
    fresh = random_coords(b, num_points - num_important, dims, generator, device)
    return torch.cat([chosen, fresh], dim=1)


def grid_coords(spatial_shape: tuple[int, ...], stride: int, device=None) -> tuple[Tensor, tuple[int, ...]]:
    """Centres of the ``stride``-sized super-cells of a grid: coordinates ``(1, N, n)`` and the coarse grid shape.

    With a grid size divisible by ``stride`` the coarse map, resized back with ``interpolate(align_corners=False)``,
    puts each value at the centre of its super-cell; ``stride=1`` gives the cell centres themselves.
    """
    axes = [
        ((torch.arange(0, -(-size // stride), device=device, dtype=torch.float32) + 0.5) * stride / size).clamp(max=1)
        for size in spatial_shape
    ]
    grid_shape = tuple(len(a) for a in axes)
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh[::-1]], dim=-1).unsqueeze(0), grid_shape


def upsample_like(x: Tensor, size: tuple[int, ...]) -> Tensor:
    """Bi/trilinear resize of ``x (B, C, *S)`` to ``size`` (align_corners=False)."""
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(x, size=size, mode=mode, align_corners=False)
