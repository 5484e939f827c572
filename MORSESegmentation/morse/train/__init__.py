"""Training: data preparation, patch sampling, augmentation, the training loop, checkpoints, distributed runs."""
