"""Worker script for the torchrun tests: runs ``morse train`` (the real command line) in this process and records
what the test needs to compare ranks afterwards.

Usage (as launched by torchrun)::

    ddp_worker.py RECORD_DIR RUNS.json

``RUNS.json`` lists the runs to make one after the other in the same processes (each a full ``morse train``, which
joins and leaves the process group), so one launch — whose start-up dominates on a small CPU — serves several runs:
``[{"name": "a", "until": null, "argv": ["train", "CONFIG", "--out", "DIR", "--device", "cpu"]}, ...]``.
``until: K`` stops that run after iteration K with a checkpoint (``Trainer.run(until=K)``), like a time-boxed job.

Per run and rank it writes ``RECORD_DIR/<name>-rank<R>.safetensors`` (the final weights) and
``RECORD_DIR/<name>-rank<R>.json`` (exit status, a hash of every batch the rank drew, the logged history, whether the
rank wrote the model pack).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path


def main() -> int:
    record, spec = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())

    from morse import cli
    from morse.train import distributed
    from morse.train.sampling import PatchSampler
    from morse.train.trainer import Trainer
    from safetensors.torch import save_file

    batches: list[str] = []
    captured: dict = {}
    sample, run = PatchSampler.sample, Trainer.run

    def recording_sample(self, batch):
        x, y = sample(self, batch)
        batches.append(hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16])
        return x, y

    def capturing_run(self, until=None):
        result = run(self, until=captured["until"])
        captured["result"] = result
        return result

    PatchSampler.sample, Trainer.run = recording_sample, capturing_run
    # Keep the process group between the runs: `morse train` joins it if present and leaves it at the end, but
    # re-creating a group in a process that destroyed one is not supported by torchrun's store.
    shutdown = distributed.shutdown
    distributed.shutdown = lambda info: None
    rank = int(os.environ.get("RANK", "0"))
    status = 0
    for item in spec:
        batches.clear()
        captured.clear()
        captured["until"] = item.get("until")
        rc = cli.main(item["argv"])
        status = status or rc
        result = captured.get("result")
        info = {"rank": rank, "world_size": int(os.environ.get("WORLD_SIZE", "1")), "rc": rc, "batches": list(batches)}
        if result is not None:
            state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
            save_file(state, str(record / f"{item['name']}-rank{rank}.safetensors"))
            info.update(history=result.history, pack_dir=str(result.pack_dir) if result.pack_dir else None)
        (record / f"{item['name']}-rank{rank}.json").write_text(json.dumps(info, indent=1))
    shutdown(distributed.DistInfo(rank, int(os.environ.get("WORLD_SIZE", "1"))))
    return status


if __name__ == "__main__":
    sys.exit(main())
