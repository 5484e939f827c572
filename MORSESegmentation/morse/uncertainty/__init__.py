"""Error-aware uncertainty: maps from MORSE's two heads and its stochastic experts, calibration, review lists."""
