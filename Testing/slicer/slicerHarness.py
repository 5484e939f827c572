"""A headless stand-in for the 3D Slicer application, built from slicer-core's real MRML and module logics.

slicer-core gives the real C++ libraries (scene, nodes, storage nodes, Segmentations / Volumes / SubjectHierarchy /
Colors logics) but no application object. This module wires them together the way the Slicer application does at
startup, so that ``slicer.mrmlScene``, ``slicer.modules.<name>.logic()`` and the parts of ``slicer.util`` that
only need those work unchanged.
"""

from __future__ import annotations

import types

import slicer
from vtkmodules.vtkCommonCore import vtkCollection

_STATE: dict = {}


def makeHeadlessSlicer():
    """Create (once per process) the scene and module logics; return ``(scene, appLogic, logics)``."""
    if _STATE:
        return _STATE["scene"], _STATE["appLogic"], _STATE["logics"]
    scene = slicer.vtkMRMLScene()
    crosshair = slicer.vtkMRMLCrosshairNode()
    crosshair.SetCrosshairName("default")
    scene.AddNode(crosshair)
    appLogic = slicer.vtkSlicerApplicationLogic()
    appLogic.SetMRMLScene(scene)
    appLogic.GetColorLogic().SetMRMLScene(scene)
    appLogic.GetColorLogic().AddDefaultColorNodes()
    appLogic.SetSliceLogics(vtkCollection())
    appLogic.SetViewLogics(vtkCollection())
    logics = {}

    def register(logic, name):
        # The application logic must be set before the scene: the colour logic reads it while observing the scene.
        logic.SetMRMLApplicationLogic(appLogic)
        logic.SetMRMLScene(scene)
        appLogic.SetModuleLogic(name, logic)
        logics[name] = logic
        return logic

    register(slicer.vtkSlicerColorLogic(), "Colors")
    register(slicer.vtkSlicerVolumesLogic(), "Volumes")  # needs "Colors"
    register(slicer.vtkSlicerSegmentationsModuleLogic(), "Segmentations")
    register(slicer.vtkSlicerSubjectHierarchyModuleLogic(), "SubjectHierarchy")
    register(slicer.vtkSlicerDataModuleLogic(), "Data")
    slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(scene, True)
    # A selection node, as the application creates one (the "active volume" lives there).
    if scene.GetNodeByID("vtkMRMLSelectionNodeSingleton") is None:
        selection = slicer.vtkMRMLSelectionNode()
        selection.SetSingletonTag("Singleton")
        scene.AddNode(selection)

    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        **{name.lower(): types.SimpleNamespace(logic=(lambda lg=lg: lg)) for name, lg in logics.items()}
    )
    _STATE.update(scene=scene, appLogic=appLogic, logics=logics)
    return scene, appLogic, logics
