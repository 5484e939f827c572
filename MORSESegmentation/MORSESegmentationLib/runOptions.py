"""What one segmentation run is asked to do (:class:`RunOptions`) and what it captured at its start
(:class:`SegmentationRequest`): the one path from the parameter node to the engine.

``RunOptions.fromParameterNode(params)`` → ``logic.captureRequest(options)`` → ``request.engineArguments()``, the
keyword arguments of :func:`morse.inference.pipeline.segment_volume` and, unchanged, the fields of the worker's
request file (:mod:`morse.inference.worker`). Both ways of running (in this process, in the worker) read them from
there, so they cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RunOptions:
    """The user's choices for one run.

    inputVolume:        scalar volume node; None = the active volume of the slice views.
    outputSegmentation: segmentation node to add the organ segments to; None = create ``<input> MORSE``.
    model:              ``"default"``, a bundled model id, or a model-pack folder.
    device:             ``auto``/``cpu``/``cuda``/``cuda:N``/``mps``; an unavailable one falls back to the CPU (said
                        once, in the log and in ``outputs.messages``).
    refine / gating / uncertainty: rendering-head refinement; expert gating maps (and the experts segmentation);
                        the uncertainty map.
    postprocess:        the engine's anatomical post-processing (one piece per organ, inside the body, of a
                        plausible size); None = as the model pack says.
    replaceExisting:    replace this volume's earlier MORSE outputs instead of adding new ones.
    mapsAsUint8:        gating and uncertainty maps as 8-bit (value × 255) rather than float32 0..1 (4× memory).
    """

    inputVolume: object = None
    outputSegmentation: object = None
    model: str = "default"
    device: str = "auto"
    refine: bool = True
    gating: bool = True
    uncertainty: bool = True
    postprocess: bool | None = True
    replaceExisting: bool = False
    mapsAsUint8: bool = True

    @classmethod
    def fromParameterNode(cls, params, **overrides) -> RunOptions:
        """The options held by the module's parameter node (``MORSESegmentationParameterNode``)."""
        values = {
            "inputVolume": params.inputVolume,
            "outputSegmentation": params.outputSegmentation,
            "model": params.model,
            "device": params.device,
            "refine": params.refine,
            "gating": params.gating,
            "uncertainty": params.uncertainty,
            "postprocess": getattr(params, "postprocess", True),
            "replaceExisting": params.replaceExisting,
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class SegmentationRequest:
    """Everything a run needs, captured on the main thread. ``volume`` is a KJI copy of the input's voxels (dropped
    once the worker has its own copy); ``volumeShape`` is its (K, J, I) shape; ``ijkToRas`` the input's 4×4
    IJK→RAS matrix (mm, RAS)."""

    inputVolumeID: str
    inputName: str
    volume: np.ndarray | None
    ijkToRas: np.ndarray
    volumeShape: tuple = ()
    model: str = "default"
    device: str = "auto"
    refine: bool = True
    gating: bool = True
    uncertainty: bool = True
    outputSegmentationID: str | None = None
    replaceExisting: bool = False
    postprocess: bool | None = True
    mapsAsUint8: bool = True

    def engineArguments(self) -> dict:
        """Keyword arguments of ``segment_volume`` (and the worker request's fields), beside volume and matrix.
        ``review``: the engine builds the review list (organs, ranked regions) on both paths, never the glue."""
        return {
            "model": self.model,
            "device": self.device,
            "refine": self.refine,
            "gating": self.gating,
            "uncertainty": self.uncertainty,
            "postprocess": self.postprocess,
            "maps_uint8": self.mapsAsUint8,
            "review": True,
        }
