"""Small pieces of the distributed set-up: per-rank generator states on resume, the device each rank trains on."""

from __future__ import annotations

import torch
from morse.train.distributed import DistInfo, rank_state, training_device


def test_each_rank_resumes_its_own_stream_and_never_borrows_another():
    states = [torch.Generator().manual_seed(s).get_state() for s in (1, 2)]
    assert torch.equal(rank_state(states, DistInfo(1, 2)), states[1])
    # a checkpoint of a 2-process run resumed with 3 processes: rank 2 gets no state (a fresh stream), instead of a
    # copy of rank 0's, which would make two ranks train on the same batches
    assert rank_state(states, DistInfo(2, 3)) is None
    assert torch.equal(rank_state(states[:1], DistInfo()), states[0])


def test_training_device_per_rank():
    single = DistInfo()
    assert training_device(torch.device("mps"), single) == torch.device("mps")
    two = DistInfo(rank=1, world_size=2, local_rank=1)
    assert training_device(torch.device("cuda"), two) == torch.device("cuda", 1)
    assert training_device(torch.device("mps"), two) == torch.device("cpu")  # no collective backend for MPS
    assert training_device(torch.device("cpu"), two) == torch.device("cpu")
