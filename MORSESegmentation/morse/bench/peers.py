"""The networks a user would run instead of MORSE, timed on the same CT (cost only: random weights).

- ``segresnet``: MONAI's SegResNetDS as the Auto3DSeg ``segresnet`` algorithm builds it (32 initial filters, blocks
  (1, 2, 2, 4, 4), instance norm), on the CT's own voxel grid (Auto3DSeg resamples to the data set's median spacing,
  which for one scan is its own), windows of 224×224×144 with an overlap of 0.625.
- ``nnunet``: a 3D full-resolution nnU-Net-style UNet (MONAI DynUNet with nnU-Net's plan for abdominal CT: six
  stages of 32…320 filters, 3³ kernels, strides 1, 2, 2, 2, 2, 2, instance norm, leaky ReLU) at 1.5 mm isotropic, as
  TotalSegmentator's 1.5 mm models run, windows of 128³ with nnU-Net's overlap of 0.5.

Both run through MONAI's ``sliding_window_inference`` (Gaussian weighting). On a CPU a whole volume would take many
minutes per network, so a fixed number of windows is run (after one warm-up window) on a sub-volume that holds
exactly that many, and the seconds per window are multiplied by the number of windows MONAI places over the whole
resampled volume; resampling the CT to the network's grid is measured in full.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..inference.windows import window_count

PEERS = {
    "segresnet": {
        "label": "MONAI SegResNet (Auto3DSeg)",
        "spacing_mm": None,  # the CT's own
        "roi": (144, 224, 224),  # (z, y, x) model voxels
        "overlap": 0.625,
    },
    "nnunet": {
        "label": "nnU-Net-style 3D full-res UNet (TotalSegmentator 1.5 mm)",
        "spacing_mm": (1.5, 1.5, 1.5),  # (z, y, x)
        "roi": (128, 128, 128),
        "overlap": 0.5,
    },
}
NUM_CLASSES = 105  # TotalSegmentator's classes plus background; the head's width barely changes the cost


def build_peer(name: str, num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """The peer network with random weights, in eval mode."""
    from monai.networks.nets import DynUNet, SegResNetDS

    torch.manual_seed(0)
    if name == "segresnet":
        net = SegResNetDS(
            spatial_dims=3, in_channels=1, out_channels=num_classes, init_filters=32,
            blocks_down=(1, 2, 2, 4, 4), norm="INSTANCE", dsdepth=1,
        )  # fmt: skip
    elif name == "nnunet":
        net = DynUNet(
            spatial_dims=3, in_channels=1, out_channels=num_classes, kernel_size=[3] * 6,
            strides=[1, 2, 2, 2, 2, 2], upsample_kernel_size=[2] * 5, filters=[32, 64, 128, 256, 320, 320],
            norm_name="instance", act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        )  # fmt: skip
    else:
        raise ValueError(f"unknown peer network {name!r}; one of {sorted(PEERS)}")
    return net.eval()


def _resampled(path: str, spacing_zyx) -> tuple[torch.Tensor, float]:
    """The CT as a float tensor ``(1, 1, D, H, W)`` on the peer's grid (trilinear), and the seconds resampling took."""
    from ..imageio import read_image
    from ..metrics import spacing_kji

    image = read_image(path)
    start = time.perf_counter()
    x = torch.from_numpy(image.array.astype("float32"))[None, None]
    if spacing_zyx is not None:
        own = spacing_kji(image.ijk_to_ras)
        size = [max(1, round(n * s / t)) for n, s, t in zip(image.array.shape, own, spacing_zyx)]
        x = torch.nn.functional.interpolate(x, size=size, mode="trilinear", align_corners=False)
    x = ((x.clamp(-1024, 3071) + 1024) / 4095).contiguous()
    return x, time.perf_counter() - start


QUICK_ROI = (64, 64, 64)  # smoke runs: small windows, not the networks' own


def peer_network(
    name: str, path: str, windows: int, device: str = "cpu", bf16: bool = False, repeats: int = 1, quick: bool = False
) -> dict:
    """Seconds per window of the peer through ``sliding_window_inference`` and the estimate for the whole CT."""
    from monai.inferers import sliding_window_inference

    cfg = dict(PEERS[name])
    if quick:
        cfg["roi"] = QUICK_ROI
    dev = torch.device(device)
    net = build_peer(name).to(dev)
    x, resample_s = _resampled(path, cfg["spacing_mm"])
    roi, overlap = cfg["roi"], cfg["overlap"]
    total_windows = window_count(tuple(x.shape[2:]), roi, overlap)
    # a sub-volume of the CT holding exactly `windows` windows along x (padded by MONAI where the CT is smaller)
    step_x = max(1, int(roi[2] * (1 - overlap)))
    width = min(int(x.shape[4]), roi[2] + step_x * (windows - 1))
    part = x[:, :, : roi[0], : roi[1], :width]
    measured = window_count(tuple(max(s, r) for s, r in zip(part.shape[2:], roi)), roi, overlap)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16) if bf16 else torch.autocast(dev.type, enabled=False)

    def run(volume):
        with torch.inference_mode(), autocast:
            out = sliding_window_inference(
                volume.to(dev), roi, sw_batch_size=1, predictor=net, overlap=overlap, mode="gaussian"
            )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return out

    run(x[:, :, : roi[0], : roi[1], : roi[2]])  # warm-up: one window
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run(part)
        times.append(time.perf_counter() - start)
    per_window = statistics.median(times) / measured
    return {
        "label": cfg["label"],
        "grid_zyx": list(x.shape[2:]),
        "spacing_mm": list(cfg["spacing_mm"]) if cfg["spacing_mm"] else "the CT's own",
        "roi_zyx": list(roi),
        "overlap": overlap,
        "windows_timed": measured,
        "windows_total": total_windows,
        "seconds_per_window": per_window,
        "resample_s": resample_s,
        "estimated_seconds": per_window * total_windows + resample_s,
        "device": device,
        "bf16": bf16,
    }
