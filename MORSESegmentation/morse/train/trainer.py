"""The training loop: iterations-based, seeded, resumable, single-process or DDP (torchrun), AMP on CUDA.

Outputs in the run folder: ``checkpoint.pt`` (resumable; read back with ``weights_only=True``), ``metrics.csv``
(one row per logged iteration), ``loss.png`` (curves), ``config.yaml`` (the resolved config) and ``model/`` (the
model pack, written by rank 0).
"""

from __future__ import annotations

import csv
import logging
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ExperimentConfig, to_dict
from ..device import resolve_device
from ..errors import ConfigError
from ..labels import LabelInfo
from ..losses import MorseLoss
from ..model import MorseModel
from ..modelpack import save_model_pack
from .augment import augment_batch
from .checkpoint import load_checkpoint, save_checkpoint
from .distributed import (
    DistInfo,
    barrier,
    init_distributed,
    rank_state,
    reduce_mean,
    sync_buffers,
    training_device,
    wrap_model,
)
from .sampling import PatchSampler
from .schedule import poly_lr
from .volumes import TrainingVolume

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: MorseModel
    out_dir: Path
    pack_dir: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    wall_time_s: float = 0.0


@dataclass
class _TrainingState:
    """What one training session carries from step to step (besides the step count and the history)."""

    model: MorseModel
    optimizer: torch.optim.Optimizer
    loss_fn: MorseLoss
    data_gen: torch.Generator  # patches and augmentation (CPU)
    model_gen: torch.Generator  # routing and point selection (training device)
    memory_format: torch.memory_format | None
    hu_scale: float | None  # normalised units per Hounsfield unit (CT window only)
    use_amp: bool


def _optimizer(model: torch.nn.Module, cfg: ExperimentConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if t.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=t.nesterov
    )


def _check(cfg: ExperimentConfig) -> None:
    dims = cfg.model.spatial_dims
    if len(cfg.data.patch_size) != dims:
        raise ConfigError(
            f"data.patch_size {cfg.data.patch_size} must have {dims} entries for {cfg.model.backbone.name}"
        )
    img_size = cfg.model.backbone.img_size
    if cfg.model.backbone.name in ("unetr", "transunet") and img_size and list(img_size) != list(cfg.data.patch_size):
        raise ConfigError("data.patch_size must equal model.backbone.img_size for transformer backbones")
    if any(p % 16 for p in cfg.data.patch_size):
        raise ConfigError(f"data.patch_size {cfg.data.patch_size}: every entry must be a multiple of 16")
    if cfg.train.iterations < 1 or cfg.train.batch_size < 1:
        raise ConfigError("train.iterations and train.batch_size must be positive")


class Trainer:
    """Trains ``cfg.model`` on ``volumes`` (already on the model grid, see :mod:`morse.train.volumes`).

    Args:
        cfg: the experiment.
        out_dir: run folder.
        volumes: training volumes.
        labels: the classes (for the model pack).
        device: ``auto``/``cpu``/``cuda``/``mps``.
        resume: continue from ``out_dir/checkpoint.pt``.
        provenance: extra facts written into the model pack (data sources, commands).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        out_dir: str | Path,
        volumes: list[TrainingVolume],
        labels: list[LabelInfo],
        device: str = "auto",
        resume: bool = False,
        provenance: dict | None = None,
    ):
        _check(cfg)
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.volumes = volumes
        self.labels = labels
        self.resume = resume
        self.provenance = provenance or {}
        choice = resolve_device(device, cfg.model.spatial_dims)
        self.dist: DistInfo = init_distributed(choice.device)
        self.device = training_device(choice.device, self.dist)

    def run(self, until: int | None = None) -> TrainResult:
        """Train to ``train.iterations``, or stop early after iteration ``until`` with a checkpoint (time-boxed jobs
        continue with ``resume=True``); the model pack is written only when the last iteration is reached."""
        cfg, t = self.cfg, self.cfg.train
        stop = t.iterations if until is None else min(until, t.iterations)
        start_time = time.perf_counter()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.dist.is_main:  # written first, so that the seed and settings of a stopped or crashed run are on record
            _write_config(self.out_dir, cfg)
        state = self._new_state()
        ckpt_path = self.out_dir / "checkpoint.pt"
        start_step, history = self._restore(ckpt_path, state) if self.resume else (0, [])
        net = wrap_model(state.model, self.device, self.dist)
        sampler = PatchSampler(self.volumes, cfg.data.patch_size, cfg.data.foreground_fraction, state.data_gen)
        progress = _progress(start_step, t.iterations, self.dist.is_main)
        state.model.train()
        step_times: list[float] = []
        for step in range(start_step, stop):
            tick = time.perf_counter()
            lr, losses = self._train_step(step, net, sampler, state)
            step_times.append(time.perf_counter() - tick)
            if (step + 1) % t.log_every == 0 or step + 1 == t.iterations:
                history.append(self._log_row(step, lr, losses, step_times, progress))
                step_times = []
            if progress is not None:
                progress.update(1)
            if (step + 1) % t.checkpoint_every == 0 or step + 1 == stop:
                self._checkpoint(ckpt_path, state.model, state.optimizer, step + 1, history, state.data_gen,
                                 state.model_gen)  # fmt: skip
        if progress is not None:
            progress.close()
        return self._finish(state.model, history, stop, start_time)

    def _new_state(self) -> _TrainingState:
        """Model (seeded: identical initial weights on every rank), per-rank random streams, optimizer, loss."""
        cfg, t = self.cfg, self.cfg.train
        torch.manual_seed(t.seed)
        model = MorseModel(cfg.model)
        if cfg.model.backbone.pretrained and not self.resume:  # on resume the checkpoint holds the weights
            _load_pretrained(model, cfg.model.backbone.pretrained)
        model = model.to(self.device)
        memory_format = torch.channels_last if t.channels_last and cfg.model.spatial_dims == 2 else None
        if memory_format is not None:
            model = model.to(memory_format=memory_format)
        model_gen = torch.Generator(device=self.device).manual_seed(t.seed + 7919 * (self.dist.rank + 1))
        data_gen = torch.Generator().manual_seed(t.seed + 104729 * (self.dist.rank + 1))
        model.set_generator(model_gen)
        intensity = cfg.preprocessing.intensity
        return _TrainingState(
            model=model,
            optimizer=_optimizer(model, cfg),
            loss_fn=MorseLoss(cfg.loss),
            data_gen=data_gen,
            model_gen=model_gen,
            memory_format=memory_format,
            hu_scale=1.0 / (intensity.high - intensity.low) if intensity.mode == "window" else None,
            use_amp=t.amp and self.device.type == "cuda",
        )

    def _restore(self, ckpt_path: Path, state: _TrainingState) -> tuple[int, list[dict[str, float]]]:
        """Weights, optimizer and every random stream from the checkpoint; returns (next step, history)."""
        if not ckpt_path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
        saved = load_checkpoint(ckpt_path, state.model, state.optimizer, map_location=self.device)
        streams = (rank_state(saved["data_generator"], self.dist), rank_state(saved["model_generator"], self.dist))
        if streams[0] is None or streams[1] is None:  # more ranks than wrote the checkpoint: fresh streams for these
            log.warning(
                "resuming with more processes than the run had: rank %d starts new random streams", self.dist.rank
            )
        else:
            state.data_gen.set_state(streams[0])
            state.model_gen.set_state(streams[1])
        # dropout draws from torch's global generator: restore it too, so a resumed run is bit-exact
        global_state = rank_state(saved.get("torch_generator", []), self.dist)
        if global_state is not None:
            torch.set_rng_state(global_state)
        return saved["step"], saved["history"]

    def _train_step(
        self, step: int, net: torch.nn.Module, sampler: PatchSampler, state: _TrainingState
    ) -> tuple[float, dict[str, torch.Tensor]]:
        """One optimisation step on a fresh augmented batch; returns (learning rate, losses)."""
        cfg, t = self.cfg, self.cfg.train
        lr = poly_lr(step, t.iterations, t.lr, t.end_lr, t.poly_power)
        for group in state.optimizer.param_groups:
            group["lr"] = lr
        x, y = sampler.sample(t.batch_size)
        x, y = augment_batch(x, y, cfg.data.augment, state.data_gen, state.hu_scale)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if state.memory_format is not None:
            x = x.contiguous(memory_format=state.memory_format)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=state.use_amp):
            outputs = net(x)
        losses = state.loss_fn(outputs, y, step, t.iterations)
        state.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        if t.grad_clip:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), t.grad_clip)
        state.optimizer.step()
        total = float(losses["total"].detach())
        if not math.isfinite(total):
            raise RuntimeError(f"training diverged at iteration {step}: loss {total}")
        return lr, losses

    def _log_row(self, step: int, lr: float, losses: dict, step_times: list[float], progress) -> dict[str, float]:
        """The metrics.csv row of ``step``: losses averaged over the ranks, mean step time since the last row."""
        row = {"step": step + 1, "lr": lr, "step_time_s": sum(step_times) / len(step_times)}
        row.update({k: float(reduce_mean(v.detach(), self.dist)) for k, v in losses.items()})
        if progress is not None:
            progress.set_postfix(loss=f"{row['total']:.4f}", lr=f"{lr:.2e}")
        return row

    def _finish(self, model: MorseModel, history: list[dict], stop: int, start_time: float) -> TrainResult:
        """Common BatchNorm statistics, metrics.csv and loss.png, and the model pack once the last step is done."""
        sync_buffers(model, self.dist)  # BatchNorm statistics of the last forward pass differ per rank: keep rank 0's
        wall = time.perf_counter() - start_time
        pack_dir = None
        if self.dist.is_main:
            _write_history(self.out_dir, history)
            if stop == self.cfg.train.iterations:
                pack_dir = self._write_pack(model, history, wall)
        barrier(self.dist)
        model.eval()
        return TrainResult(model, self.out_dir, pack_dir, history, wall)

    def _checkpoint(self, path, model, optimizer, step, history, data_gen, model_gen) -> None:
        data_states = _gather_states(data_gen.get_state(), self.dist)
        model_states = _gather_states(model_gen.get_state().cpu(), self.dist)
        torch_states = _gather_states(torch.get_rng_state(), self.dist)
        if self.dist.is_main:
            save_checkpoint(
                path,
                model,
                optimizer,
                step=step,
                history=history,
                config=to_dict(self.cfg),
                data_generator=data_states,
                model_generator=model_states,
                torch_generator=torch_states,
            )
        barrier(self.dist)

    def _write_pack(self, model: MorseModel, history: list[dict], wall: float) -> Path:
        training = {
            "experiment": self.cfg.name,
            "config": to_dict(self.cfg),
            "iterations": self.cfg.train.iterations,
            "seed": self.cfg.train.seed,
            "world_size": self.dist.world_size,
            "device": str(self.device),
            "hardware": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
            "wall_time_s": round(wall, 1),
            "final_loss": history[-1] if history else None,
            **self.provenance,
        }
        return save_model_pack(
            self.out_dir / "model",
            model,
            model_id=self.cfg.name,
            version="0.1.0",
            preprocessing=self.cfg.preprocessing,
            labels=self.labels,
            description=self.cfg.description,
            inference=_inference_settings(self.cfg),
            training=training,
            overwrite=True,
        )


def _inference_settings(cfg: ExperimentConfig) -> dict:
    """The pack's ``inference`` block: a 3D CNN slides windows of its training patch (without it, inference takes 96³
    windows, padding a thin MR or a patch trained deeper into something the network never saw); transformer backbones
    have a fixed input size of their own."""
    if cfg.model.spatial_dims == 3 and not cfg.model.backbone.img_size:
        return {"roi_size": [int(p) for p in cfg.data.patch_size]}
    return {}


def _load_pretrained(model: MorseModel, path: str) -> None:
    """User-supplied encoder weights (``model.backbone.pretrained``, a local file) for a new run."""
    load = getattr(model.backbone, "load_pretrained", None)
    if load is None:
        raise ConfigError(
            f"model.backbone.pretrained: the {model.cfg.backbone.name} backbone cannot load pretrained weights"
        )
    load(path)


def _write_config(out_dir: Path, cfg: ExperimentConfig) -> None:
    """``config.yaml``: the resolved experiment, ``train.seed`` included (UTF-8 whatever the process locale)."""
    import yaml

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    (out_dir / "config.yaml").write_text(text, encoding="utf-8")


def _gather_states(state: torch.Tensor, info: DistInfo) -> list[torch.Tensor]:
    """Every rank's generator state (so a resumed distributed run continues each rank's random stream)."""
    if not info.enabled:
        return [state]
    import torch.distributed as dist

    states: list = [None] * info.world_size
    dist.all_gather_object(states, state)
    return states


def _progress(start: int, total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc="training", unit="it", dynamic_ncols=True, mininterval=2.0)


def _write_history(out_dir: Path, history: list[dict]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(out_dir / "metrics.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is a convenience; the CSV holds the numbers
        log.info("matplotlib not installed: loss.png not written")
        return
    steps = [row["step"] for row in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in (("total", "total"), ("sup", "CE + Dice (coarse)"), ("rend", "point CE (rendering head)")):
        if key in history[0]:
            ax.plot(steps, [row[key] for row in history], label=label)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png")
    plt.close(fig)
