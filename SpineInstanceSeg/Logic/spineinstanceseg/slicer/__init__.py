"""The 3D Slicer side of the library: the only subpackage that imports ``slicer``, ``vtk`` or MRML classes.

Modules:

* :mod:`.volume_nodes` - MRML volume nodes <-> :class:`~spineinstanceseg.volume.Volume` (RAS <-> LPS, parent
  transforms);
* :mod:`.mrml_adapter` - results -> segmentation node (named, coloured, coded segments), centroid markups and a
  confidence table;
* :mod:`.exports` - STL per segment, labelmap NRRD and ``.seg.nrrd`` from a segmentation node;
* :mod:`.segment_mask` - a segmentation node as the stage-1 mask, each segment read by terminology or name;
* :mod:`.process_runner` - runs the pipeline in a child process without blocking the GUI (progress, cancel);
* :mod:`.job` - one "Segment spine" run of the Slicer module (input export, child process, results into the scene);
* :mod:`.dependencies` - installing the Python packages into Slicer's Python (on demand, after confirmation,
  never replacing what Slicer bundles);
* :mod:`.console` - batch helpers for Slicer's Python console (non-blocking, and blocking for scripts).

Nothing is imported here, so ``import spineinstanceseg.slicer.process_runner`` works without Slicer. The MRML
modules work with the application or with the ``slicer-core`` wheel (MRML without the application).
"""
