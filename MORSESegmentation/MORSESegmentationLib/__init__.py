"""Slicer glue of the MORSESegmentation module: MRML nodes <-> numpy arrays, output nodes, parameters, model
catalogue, dependency installation, the background worker and the widget.

Nothing here imports torch at import time (the engine, :mod:`morse`, is imported lazily where it is needed), so
the module loads in Slicer before its Python dependencies are installed.
"""
