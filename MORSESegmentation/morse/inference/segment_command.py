"""``morse segment INPUT... -o OUTDIR``: segment image files and write every output per case."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from ..errors import MorseError, OutputError
from ..geometry import spacing_ijk
from ..imageio import case_name, read_image
from ..modelpack import load_model_pack
from ..staging import CaseLock, recover_leftovers, refuse_overlap
from ..uncertainty.review import write_review_files
from .outputs import check_writable, write_case
from .pipeline import release_models, segment_volume

log = logging.getLogger(__name__)

_WHAT = {
    "segmentation.nii.gz": "refined organ labels (values as in summary.json 'labels')",
    "segmentation.seg.nrrd": "the same as a 3D Slicer segmentation (names, colours, SNOMED-CT terminology)",
    "coarse.nii.gz": "labels of the backbone's own head, before the rendering head",
    "gating.nii.gz": "gate weight of each expert (one component per expert, 0..1)",
    "uncertainty.nii.gz": "voxel uncertainty (0..1; the option and calibration in review.json 'settings')",
    "rectified.nii.gz": "1 where the rendering head replaced the prediction",
    "preview.png": "axial slices with the organs overlaid",
    "summary.json": "model, device, timings per stage, organ volumes in ml",
    "review.json": "what to check: organs (ml, confidence, flags) and ranked uncertain regions (IJK, RAS mm)",
    "review.csv": "the same table as CSV",
}


def run(args) -> int:
    pack = load_model_pack(args.model)
    out_root = Path(args.out)
    names = [case_name(p) for p in args.inputs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise OutputError(f"several inputs share the case name(s) {sorted(duplicates)}; segment them separately")
    intended = pack.meta.get("intended_use")
    if intended:
        print(f"model {pack.model_id} {pack.version}, intended use: {intended}")
    protected = [("input", Path(p)) for p in args.inputs]
    if pack.path is not None:
        protected.append(("model pack", Path(pack.path)))
    with contextlib.ExitStack() as locks:
        for name in names:  # fail before any computation rather than after the first case
            refuse_overlap(out_root / name, protected)
            check_writable(out_root / name, args.overwrite)
            locks.enter_context(CaseLock(out_root / name))
            for note in recover_leftovers(out_root / name):
                print(f"note: {note}")
            check_writable(out_root / name, args.overwrite)  # a recovered folder counts as existing
        failures = _segment_all(args, pack, out_root, names)
    release_models()
    return 1 if failures else 0


def _segment_all(args, pack, out_root: Path, names: list[str]) -> int:
    """Segment and write every input (its case folder locked by the caller); the number of failed cases."""
    failures = 0
    for path, name in zip(args.inputs, names):
        try:
            image = read_image(path)
            shape = "×".join(map(str, image.array.shape))
            log.info("%s: %s voxels (KJI), model %s %s", name, shape, pack.model_id, pack.version)
            result = segment_volume(
                image.array,
                image.ijk_to_ras,
                model=pack,
                device=args.device,
                refine=args.refine,
                gating=args.gating,
                uncertainty=args.uncertainty,
                gating_stride=args.gating_stride,
                postprocess=getattr(args, "postprocess", None),
                progress=_progress_printer(name),
                name=str(path),
                maps_uint8=True,  # what the files store; a quarter of the memory of float32 maps
            )
            out = write_case(
                out_root / name,
                result,
                image.array,
                str(path),
                overwrite=args.overwrite,
                extra_files=lambda folder: write_review_files(folder, result, str(path), pack),  # noqa: B023
            )
        except MorseError as exc:
            if len(args.inputs) == 1:
                raise
            failures += 1
            log.error("%s: %s", path, exc)
            continue
        for message in result.messages:
            print(f"note: {message}")
        _report(out, result)
    return failures


def _progress_printer(name: str):
    last = {"stage": None}

    def report(stage: str, fraction: float) -> None:
        if stage != last["stage"]:
            log.info("%s: %s", name, stage)
            last["stage"] = stage

    return report


def organs_found(result) -> str:
    """The non-empty organs with their volume (0.1 ml), mean confidence (1 − uncertainty, when computed) and where
    the scan's edge cuts them, e.g. ``liver 1523.4 ml (confidence 0.93, cut at the top)``; ``none`` when empty."""
    volumes = result.volumes_ml(tuple(float(s) for s in spacing_ijk(result.ijk_to_ras)))
    confidence = result.confidence()
    truncated = (getattr(result, "domain", None) or {}).get("truncated", {})
    found = []
    for name, ml in volumes.items():
        if ml <= 0:
            continue
        extra = [f"confidence {confidence[name]:.2f}"] if name in confidence else []
        if name in truncated:
            extra.append("cut at the " + "/".join(truncated[name]))
        found.append(f"{name} {ml:.1f} ml" + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(found) if found else "none"


def _report(out: Path, result) -> None:
    total = result.timings.get("total", 0.0)
    print(f"\n{out}/  ({result.model_id} {result.model_version} on {result.device}, {total:.1f} s)")
    for file, what in _WHAT.items():
        if (out / file).exists():
            print(f"  {file:<24} {what}")
    print("  organs found: " + organs_found(result))
    if result.rectified is not None:
        print(
            f"  rendering head: {int(result.rectified.sum())} voxels re-predicted, "
            f"{int(result.changed.sum())} changed label"
        )
