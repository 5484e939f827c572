"""What each uncertainty option costs on the bench CT: the network passes it needs beyond the refined run
(Monte-Carlo expert routing at the rendered cells, the mirrored pass) plus the map itself, over the refined run's
network seconds (backbone + rendering head), as :mod:`morse.experiments.uncertainty` measures it on the BTCV cases.

Every ``stride``-th axial slice of the model grid: a 2D model sees each slice alone, so the ratios do not depend on
which slices are kept, only the absolute seconds scale with their number.
"""

from __future__ import annotations

import time

import torch


def option_costs(path: str, model: str, stride: int, samples: int = 4, seed: int = 20231) -> dict:
    """``{"cost": {option: ratio}, "seconds": {part: s}, "map_seconds": {option: s}, "slices": n, "default": option}``
    for the pack ``model`` on the image at ``path`` (CPU; ``samples`` routing draws per rendered cell)."""
    from ..experiments.uncertainty_cache import soft_batches
    from ..imageio import read_image
    from ..modelpack import load_model_pack
    from ..uncertainty import maps

    image = read_image(path)
    pack = load_model_pack(model)
    temperature = float((pack.meta.get("calibration") or {}).get("temperature", 1.0))
    # warm-up on a few slices: first calls pay for allocation and kernel selection
    _, _, warm = soft_batches(image.array, image.ijk_to_ras, pack, samples, seed, stride=max(1, image.array.shape[0]))
    for _ in warm:
        pass
    timings: dict[str, float] = {}
    map_seconds = dict.fromkeys(maps.OPTIONS, 0.0)
    _, keep, batches = soft_batches(image.array, image.ijk_to_ras, pack, samples, seed, stride, timings=timings)
    with torch.inference_mode():
        for _, _, batch in batches:
            for option in maps.OPTIONS:
                t0 = time.perf_counter()
                maps.option_map(option, batch, 1.0 if option in maps.MONTE_CARLO else temperature)
                map_seconds[option] += time.perf_counter() - t0
    return {
        "cost": maps.cost_ratios(timings, map_seconds),
        "seconds": timings,
        "map_seconds": map_seconds,
        "slices": len(keep),
        "samples": samples,
        "default": (pack.meta.get("calibration") or {}).get("uncertainty"),
    }


def render(result: dict | None) -> list[str]:
    """Markdown lines of the uncertainty-cost table (``result``: :func:`option_costs`'s, or None when not run)."""
    from ..uncertainty.names import FLIP, MONTE_CARLO

    if not result:
        return ["Not measured in this run."]
    sec = result["seconds"]
    lines = [
        f"On {result['slices']} model-grid slices of the CT (CPU). Network of the refined run (backbone + rendering "
        f"head): {sec['network']:.2f} s; {result['samples']} Monte-Carlo routing samples at the rendered cells: "
        f"{sec.get('mc', 0.0):.2f} s; the mirrored pass: {sec.get('flip', 0.0):.2f} s.",
        "",
        "| option | extra passes | map (s) | cost × refined |",
        "|:---|:---|---:|---:|",
    ]
    for option, ratio in result["cost"].items():
        extra = "Monte-Carlo routing" if option in MONTE_CARLO else "mirrored pass" if option in FLIP else "none"
        mark = " (the pack's default)" if option == result.get("default") else ""
        lines.append(f"| `{option}`{mark} | {extra} | {result['map_seconds'][option]:.2f} | {ratio:.2f}× |")
    default = result.get("default")
    if default in result["cost"]:
        lines += [
            "",
            f"- Default option `{default}`: **{result['cost'][default]:.2f}×** the refined run's network "
            f"(target ≤ 1.3×: **{'met' if result['cost'][default] <= 1.3 else 'missed'}**). What each option finds: "
            "`uncertainty.md`.",
        ]
    return lines
