"""MORSE: implicit anatomical rendering with stochastic experts.

The engine behind the MORSE 3D Slicer extension. It never imports Slicer, Qt or VTK.

Public entry points (imported lazily so that ``import morse`` stays cheap inside Slicer):

- :func:`morse.inference.segment_volume` — numpy volume (KJI) + IJK→RAS matrix → every output.
- :func:`morse.modelpack.load_model_pack` — a model pack directory (``model.json`` + ``model.safetensors``).
- ``morse`` command line (:mod:`morse.cli`).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model_pack", "segment_volume"]


def __getattr__(name):
    if name == "segment_volume":
        from .inference.pipeline import segment_volume

        return segment_volume
    if name == "load_model_pack":
        from .modelpack import load_model_pack

        return load_model_pack
    raise AttributeError(f"module 'morse' has no attribute {name!r}")
