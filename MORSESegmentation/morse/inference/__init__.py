"""Inference: whole-volume segmentation with refinement, maps and file outputs."""
