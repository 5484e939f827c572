"""Temperature calibration of the refined softmax, fitted on labelled validation voxels.

One scalar ``T`` divides the refined logits before the softmax; it is the minimiser of the negative log-likelihood
of the reference labels (Guo et al. 2017), searched over log T in [log 0.05, log 20]. The model pack stores it
(``model.json`` → ``calibration``, checked by :mod:`morse.pack_limits`)::

    "calibration": {"temperature": 1.4, "uncertainty": "refined-entropy", "review_threshold": 0.31,
                    "low_confidence": 0.9, "fitted_on": ["btcv_0037", ...], "objective": "..."}
"""

from __future__ import annotations

import math

import numpy as np
import torch

T_RANGE = (0.05, 20.0)


def nll(logits: torch.Tensor, target: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``target (N,)`` under ``softmax(logits (N, C) / T)``."""
    return float(torch.nn.functional.cross_entropy(logits / temperature, target).item())


def fit_temperature(logits: np.ndarray, target: np.ndarray) -> tuple[float, float, float]:
    """``(T, nll at T = 1, nll at T)`` for voxel logits ``(N, C)`` and their reference classes ``(N,)``."""
    from scipy.optimize import minimize_scalar

    x = torch.from_numpy(np.asarray(logits, dtype=np.float32))
    y = torch.from_numpy(np.asarray(target, dtype=np.int64))
    res = minimize_scalar(
        lambda s: nll(x, y, math.exp(s)),
        bounds=(math.log(T_RANGE[0]), math.log(T_RANGE[1])),
        method="bounded",
        options={"xatol": 1e-4},
    )
    t = float(math.exp(res.x))
    return t, nll(x, y, 1.0), nll(x, y, t)


def pack_temperature(pack) -> float:
    """The pack's calibration temperature (1 when it has none)."""
    cal = (getattr(pack, "meta", None) or {}).get("calibration") or {}
    return float(cal.get("temperature", 1.0))


def map_settings(pack) -> tuple[str, float] | None:
    """``(option, temperature)`` of the uncertainty map the pack asks for (``calibration.uncertainty``), or None for
    the map MORSE writes without calibration (1 − top-2 margin of the coarse softmax)."""
    cal = (getattr(pack, "meta", None) or {}).get("calibration")
    if not cal:
        return None
    return str(cal.get("uncertainty", "margin")), float(cal.get("temperature", 1.0))
