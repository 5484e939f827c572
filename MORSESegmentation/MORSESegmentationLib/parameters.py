"""Module state: the parameter node (per scene, saved with it) and the user's preferences (per user, QSettings).

The parameter node holds what belongs to one scene: which volume, which output node, which options. Preferences
follow the user from scene to scene and session to session: the compute device and the last model folder loaded
from disk.
"""

from __future__ import annotations

from typing import Annotated

from morse.device import CHOICES as DEVICE_CHOICES
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper


@parameterNodeWrapper
class MORSESegmentationParameterNode:
    """The parameters of the MORSESegmentation module (each maps to one GUI widget through ``connectGui``).

    inputVolume:        volume to segment.
    outputSegmentation: segmentation to add the organs to; empty = create ``<input> MORSE``.
    model:              ``"default"``, a bundled model id, or a model-pack folder.
    device:             auto / cpu / cuda / mps (an unavailable device falls back to the CPU, with a message).
    refine:             run the implicit rendering head on the uncertain voxels.
    gating:             create the per-expert gating maps and the experts segmentation.
    uncertainty:        create the uncertainty map.
    postprocess:        anatomical post-processing of the organ labels (one piece per organ, inside the body).
    replaceExisting:    replace this volume's earlier MORSE outputs instead of adding new ones.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    outputSegmentation: vtkMRMLSegmentationNode
    model: str = "default"
    device: Annotated[str, Choice(list(DEVICE_CHOICES))] = "auto"
    refine: bool = True
    gating: bool = True
    uncertainty: bool = True
    postprocess: bool = True
    replaceExisting: bool = False


class Preferences:
    """Per-user preferences in ``QSettings`` under ``MORSESegmentation/``.

    ``settings`` is any object with ``value(key, default)`` and ``setValue(key, value)`` (default ``qt.QSettings()``,
    created on first use so that importing this module needs no application).
    """

    GROUP = "MORSESegmentation"

    def __init__(self, settings=None):
        self._settings = settings

    @property
    def settings(self):
        if self._settings is None:
            import qt

            self._settings = qt.QSettings()
        return self._settings

    def _get(self, name: str, default: str) -> str:
        value = self.settings.value(f"{self.GROUP}/{name}", default)
        return default if value is None else str(value)

    def _set(self, name: str, value: str) -> None:
        self.settings.setValue(f"{self.GROUP}/{name}", value)

    @property
    def device(self) -> str:
        """Preferred compute device; anything unknown reads as ``auto``."""
        value = self._get("device", "auto")
        return value if value in DEVICE_CHOICES else "auto"

    @device.setter
    def device(self, value: str) -> None:
        if value not in DEVICE_CHOICES:
            raise ValueError(f"unknown device {value!r}; choose one of {', '.join(DEVICE_CHOICES)}")
        self._set("device", value)

    @property
    def lastModelFolder(self) -> str:
        """The model-pack folder last loaded from disk ("" if none)."""
        return self._get("lastModelFolder", "")

    @lastModelFolder.setter
    def lastModelFolder(self, value: str) -> None:
        self._set("lastModelFolder", str(value or ""))
