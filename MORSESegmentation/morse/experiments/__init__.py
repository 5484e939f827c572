"""Experiments behind the results pages: the ablation table and the shipped default model (``make experiment``,
``make default-model``)."""
