"""Heads of MORSE: point operations, stochastic mixture of experts, point-rendering head."""
