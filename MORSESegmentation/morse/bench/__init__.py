"""Benchmark of MORSE against its backbone (``morse bench``)."""
