"""Publishing a trained model pack as a bundled model: checksum verified, ``model.json`` updated, swapped in whole."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..fileutils import replace_folder, sha256_file
from ..staging import publish_permissions, staging_dir


def publish_pack(pack: Path, target: Path, **fields) -> Path:
    """Copy the pack folder ``pack`` to ``target``: its weights (checksum checked against its ``model.json``) and
    its ``model.json`` updated with ``fields`` (``training`` is merged into the pack's own block, the rest replace
    their keys), written in a staging folder beside ``target`` and swapped in whole, so a failure leaves the old
    ``target`` as it was."""
    meta = json.loads((pack / "model.json").read_text(encoding="utf-8"))
    weights = pack / meta["weights"]["file"]
    if sha256_file(weights) != meta["weights"]["sha256"]:
        raise RuntimeError(f"{weights}: checksum differs from its model.json")
    training = {**meta["training"], **fields.pop("training", {})}
    meta.update(**fields, training=training)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_dir(target)
    shutil.copyfile(weights, tmp / "model.safetensors")
    (tmp / "model.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    publish_permissions(tmp)
    replace_folder(tmp, target)
    return target
