"""Offscreen pictures of a MORSE result as the Slicer module displays it (``make screenshots``; not part of the tests).

Two steps, in two virtual environments:

1. ``segment OUT`` (the main ``.venv``: torch and the engine): reads the sample CT, writes it to ``OUT/ct.nrrd`` and
   segments it as the module's Apply does, through the module's worker process
   (:class:`MORSESegmentationLib.backgroundRun.WorkerRun`, with the panel's default options). The result is kept in
   ``OUT/result`` (``.npy`` files + ``result.json``, :func:`morse.inference.worker.write_result`).
2. ``render OUT IMAGES`` (``.venv-trame``: trame-slicer, slicer-core 5.11, no torch): loads ``OUT/ct.nrrd`` into a
   trame-slicer :class:`SlicerApp` scene, makes the output nodes with the module's own import
   (:func:`MORSESegmentationLib.resultImport.importResult`: colours, colour tables, map thresholds, terminology) and
   renders four PNGs offscreen (EGL, no server, no GPU needed): the organs on an axial slice, the uncertainty map and
   one gating map as foreground over the CT, and the organs' closed surfaces in 3D.

Both steps need ``MORSESegmentation`` on ``PYTHONPATH``; step 2 also ``VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow``
where there is no display.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SIZE = 500  # pixels, square
FOREGROUND_OPACITY = 0.5  # the slice views' foreground slider for the map pictures
CAMERA_ELEVATION, CAMERA_AZIMUTH = 50.0, -25.0  # degrees, from the anterior view
SHOWN_ORGANS = ("liver", "stomach")  # the axial slice is the one with the most of these


def segment(out: Path, case: str, model: str) -> None:
    """Step 1: the sample CT as ``ct.nrrd`` and the module's run on it as ``result/``."""
    from morse.data.cases import case_path
    from morse.imageio import read_image, write_image
    from morse.inference.worker import write_result
    from MORSESegmentationLib.backgroundRun import WorkerRun
    from MORSESegmentationLib.runOptions import RunOptions

    out.mkdir(parents=True, exist_ok=True)
    image = read_image(case_path(case))
    write_image(out / "ct.nrrd", image.array, image.ijk_to_ras)
    options = RunOptions(model=model)  # what the panel sends unless the user changes it
    job = WorkerRun(
        image.array,
        image.ijk_to_ras,
        model=options.model,
        device=options.device,
        refine=options.refine,
        gating=options.gating,
        uncertainty=options.uncertainty,
        mapsUint8=options.mapsAsUint8,
        postprocess=options.postprocess,
    )
    try:
        job.start()
        job.wait(onEvent=lambda e: print(f"  {e.stage} {e.fraction:.0%}") if e.kind == "progress" else None)
        result = job.result()
    finally:
        job.cleanup()
    write_result(result, out / "result")
    print(f"wrote {out / 'ct.nrrd'} and {out / 'result'} (model {result.model_id} {result.model_version})")


def _write_png(view, path: Path) -> None:
    import vtk

    view.render()
    grab = vtk.vtkWindowToImageFilter()
    grab.SetInput(view.render_window())
    grab.ReadFrontBufferOff()
    grab.Update()
    writer = vtk.vtkPNGWriter()
    writer.SetFileName(str(path))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def _axial_slice_ras(result, organs) -> float:
    """S coordinate (mm) of the axial slice with the most voxels of ``organs``."""
    import numpy as np

    values = [info.value for info in result.labels_info if info.name in organs]
    counts = np.isin(result.labels, values).sum(axis=(1, 2))
    k = int(counts.argmax())
    j, i = (n // 2 for n in result.labels.shape[1:])
    return float((result.ijk_to_ras @ np.array([i, j, k, 1.0]))[2])


def _most_telling_gate(volumes, labels) -> int:
    """Index of the gating map that varies most inside the organs (a map that is flat everywhere says little)."""
    import numpy as np
    import slicer

    inside = labels > 0
    spread = [float(slicer.util.arrayFromVolume(v)[inside].std()) for v in volumes]
    return int(np.argmax(spread))


def render(out: Path, images: Path) -> None:
    """Step 2: the output nodes made by the module's import, rendered offscreen into ``images``."""
    import numpy as np
    import slicer
    import vtk
    from morse.inference.worker import read_result
    from trame_slicer.core import SlicerApp
    from trame_slicer.views import DirectViewFactory, ViewLayoutDefinition

    app = SlicerApp()
    slicer.mrmlScene = app.scene  # the module's code creates its nodes in slicer.mrmlScene
    from MORSESegmentationLib.logic import SegmentationLogic
    from MORSESegmentationLib.runOptions import RunOptions

    app.view_manager.register_factory(DirectViewFactory(do_render_offscreen=True))
    axial = app.view_manager.create_view(ViewLayoutDefinition.axial_view())
    three_d = app.view_manager.create_view(ViewLayoutDefinition.threed_view())
    for view in (axial, three_d):
        view.render_window().SetSize(SIZE, SIZE)

    ct = app.io_manager.load_volumes([str(out / "ct.nrrd")])[0]
    ct.SetName("CT")
    result = read_result(out / "result")
    logic = SegmentationLogic()
    request = logic.captureRequest(RunOptions(inputVolume=ct))
    if not np.allclose(request.ijkToRas, result.ijk_to_ras, atol=1e-4):
        sys.exit("the result was made on another grid than ct.nrrd: run the segment step again")
    outputs = logic.importResult(request, result)

    images.mkdir(parents=True, exist_ok=True)
    app.display_manager.show_volume_in_slice_background(ct)
    ct.GetDisplayNode().SetAutoWindowLevel(False)
    ct.GetDisplayNode().SetWindowLevel(350, 40)  # Slicer's "CT abdomen" preset
    axial.fit_view_to_content()
    axial.get_view_node().SetSliceOffset(_axial_slice_ras(result, SHOWN_ORGANS))
    _write_png(axial, images / "slicer-organs.png")

    # The maps as the user shows them: foreground layer over the CT, the organ outlines kept.
    segmentation_display = outputs.segmentation.GetDisplayNode()
    segmentation_display.SetVisibility2DFill(False)
    axial.set_foreground_opacity(FOREGROUND_OPACITY)
    app.display_manager.show_volume_in_slice_foreground(outputs.uncertaintyVolume)
    _write_png(axial, images / "slicer-uncertainty.png")
    gate = outputs.gatingVolumes[_most_telling_gate(outputs.gatingVolumes, result.labels)]
    app.display_manager.show_volume_in_slice_foreground(gate)
    _write_png(axial, images / "slicer-gating.png")
    print(f"gating picture: {gate.GetName()}")

    app.display_manager.show_volume_in_slice_foreground(None)
    outputs.segmentation.CreateClosedSurfaceRepresentation()
    three_d.fit_view_to_content()  # from the front
    camera = three_d.get_camera_node().GetCamera()
    camera.Elevation(CAMERA_ELEVATION)  # from the front and above: the slab's organs side by side
    camera.Azimuth(CAMERA_AZIMUTH)
    camera.OrthogonalizeViewUp()
    _write_png(three_d, images / "slicer-3d.png")
    vtk.vtkObject.GlobalWarningDisplayOff()  # the views' pipelines complain while the scene is torn down


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    steps = parser.add_subparsers(dest="step", required=True)
    seg = steps.add_parser("segment", help="main .venv: the sample CT and the module's run on it")
    seg.add_argument("out", type=Path)
    seg.add_argument("--case", default="abdomen-ct-dicom")
    seg.add_argument("--model", default="default")
    ren = steps.add_parser("render", help=".venv-trame: the PNGs")
    ren.add_argument("out", type=Path)
    ren.add_argument("images", type=Path)
    args = parser.parse_args(argv)
    if args.step == "segment":
        segment(args.out, args.case, args.model)
    else:
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
        render(args.out, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
