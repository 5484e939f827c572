"""``morse train CONFIG``: train from a YAML experiment config and write a model pack."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import load_experiment
from ..errors import ConfigError

log = logging.getLogger(__name__)


def run(args) -> int:
    overrides: dict = {}
    if args.iterations is not None:
        overrides.setdefault("train", {})["iterations"] = args.iterations
    if args.seed is not None:
        overrides.setdefault("train", {})["seed"] = args.seed
    cfg = load_experiment(args.config, overrides)
    out = Path(args.out) if args.out else Path("runs") / cfg.name
    if (out / "checkpoint.pt").exists() and not args.resume:
        raise ConfigError(f"{out} already holds a training run; add --resume to continue it or choose another --out")
    from ..device import resolve_device
    from .dataset import load_training_data
    from .distributed import init_distributed, rank_zero_first, shutdown
    from .trainer import Trainer

    # Under torchrun: join the process group first, so that rank 0 builds a registry data set before the others read it.
    info = init_distributed(resolve_device(args.device, cfg.model.spatial_dims).device)
    if not info.is_main:  # one copy of the progress messages, from rank 0
        logging.getLogger("morse").setLevel(logging.WARNING)
    try:
        with rank_zero_first(info):
            volumes, labels, provenance = load_training_data(cfg, args.cache)
        provenance["config_file"] = _portable_path(args.config)
        trainer = Trainer(cfg, out, volumes, labels, device=args.device, resume=args.resume, provenance=provenance)
        result = trainer.run()
    finally:
        shutdown(info)
    if result.pack_dir is not None:
        print(f"model pack: {result.pack_dir}")
        print(f"loss curves: {out / 'loss.png'}; metrics log: {out / 'metrics.csv'}")
    return 0


def _portable_path(path) -> str:
    """``path`` relative to the working directory when it lies below it (provenance must not name this machine's
    folders), else as given."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)
