"""The polynomial learning-rate schedule against torch's PolynomialLR."""

from __future__ import annotations

import pytest
import torch
from morse.train.schedule import poly_lr


def _torch_schedule(total: int, lr: float, power: float) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=total, power=power)
    rates = []
    for _ in range(total + 3):  # past the end: both stay at the final rate
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize("power", [0.9, 1.0, 2.0])
def test_without_a_floor_it_is_torch_polynomial_lr(power):
    total, lr = 40, 5e-4
    ours = [poly_lr(step, total, lr, 0.0, power) for step in range(total + 3)]
    assert ours == pytest.approx(_torch_schedule(total, lr, power), rel=1e-9, abs=1e-15)


def test_the_floor_torch_lacks():
    """The released code's schedule decays to end_lr = 0.001, not to 0: lr_t = (lr − end)(1 − t/T)^p + end."""
    assert poly_lr(0, 100, 1e-2, 1e-3, 0.9) == pytest.approx(1e-2)
    assert poly_lr(50, 100, 1e-2, 1e-3, 0.9) == pytest.approx(9e-3 * 0.5**0.9 + 1e-3)
    assert poly_lr(100, 100, 1e-2, 1e-3, 0.9) == poly_lr(250, 100, 1e-2, 1e-3, 0.9) == pytest.approx(1e-3)
