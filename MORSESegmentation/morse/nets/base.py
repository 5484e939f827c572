"""What every backbone returns: coarse logits from its own head, and its decoder features as experts."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class BackboneOutput:
    """logits: ``(B, C, *S)`` at input resolution; experts: ``[(B, C_k, *S_k)]`` ordered coarse to fine."""

    logits: Tensor
    experts: list[Tensor]


class FeatureTap:
    """Collects the outputs of named submodules during a forward pass (forward hooks).

    Used for MONAI networks whose forward we do not re-write. The tap is cleared at the start of every read, so a
    stale feature from an earlier pass is never returned.
    """

    def __init__(self, module: nn.Module, names: list[str]):
        self.names = list(names)
        self._store: dict[str, Tensor] = {}
        modules = dict(module.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise ValueError(f"no submodule(s) named {missing} in {type(module).__name__}")
        for name in names:
            modules[name].register_forward_hook(self._hook(name))

    def _hook(self, name: str):
        def hook(_module, _inputs, output):
            self._store[name] = output

        return hook

    def collect(self) -> list[Tensor]:
        feats = [self._store[n] for n in self.names]
        self._store = {}
        return feats
