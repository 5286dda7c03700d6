"""3D Slicer module "Spine Instance Segmentation": one segment per vertebra, centroids, exports.

This file is a thin shell: the widget maps its controls to a parameter node and calls the library
(``spineinstanceseg``, shipped in ``Logic/``). Everything that touches MRML data lives in
``spineinstanceseg.slicer`` and is tested with slicer-core outside the application.
"""

import enum
import logging
import os
import pathlib
import sys
import tempfile
import unittest
from typing import Annotated, Union

import qt
import slicer
import vtk
from slicer import (
    vtkMRMLLabelMapVolumeNode,
    vtkMRMLMarkupsFiducialNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSegmentationNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# The library ships next to this file (Logic/spineinstanceseg); put it first so this module uses its own copy.
_LOGIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "Logic")
if _LOGIC_DIR not in sys.path:
    sys.path.insert(0, _LOGIC_DIR)

# Oldest Slicer the module runs on: the first whose Python (3.12) is at least the library's 3.10 (Slicer 5.8 and
# older have Python 3.9). Also spineinstanceseg.slicer.dependencies.MINIMUM_SLICER_VERSION.
MINIMUM_SLICER_VERSION = (5, 10)
MINIMUM_PYTHON_VERSION = (3, 10)


def slicerVersionProblem(slicerVersion, pythonVersion):
    """Why this Slicer cannot run the module (``None`` when it can); shown in the module panel.

    Plain Python 3.9 on purpose: it runs before the library (Python >= 3.10) is imported.
    """
    slicerVersion, pythonVersion = tuple(slicerVersion)[:2], tuple(pythonVersion)[:2]
    if slicerVersion >= MINIMUM_SLICER_VERSION and pythonVersion >= MINIMUM_PYTHON_VERSION:
        return None
    return _(
        "Spine Instance Segmentation needs 3D Slicer {minimum} or later (Python {python} or later). This is "
        "Slicer {slicer} with Python {current}. Install a newer Slicer from download.slicer.org."
    ).format(
        minimum=".".join(str(v) for v in MINIMUM_SLICER_VERSION),
        python=".".join(str(v) for v in MINIMUM_PYTHON_VERSION),
        slicer=".".join(str(v) for v in slicerVersion),
        current=".".join(str(v) for v in pythonVersion),
    )


def _runningSlicerVersion():
    return (int(slicer.app.majorVersion), int(slicer.app.minorVersion))


# Label conventions a labelmap used as the stage-1 mask may use: the library's list (a module without imports of its
# own). An old Slicer whose Python cannot import the library only shows which Slicer is needed (see setup()).
try:
    from spineinstanceseg.convention_names import MASK_CONVENTIONS
except Exception:  # noqa: BLE001 - Python 3.9: the panel says which Slicer is needed and offers nothing else
    MASK_CONVENTIONS = ("semantic",)


#
# Module
#


class SpineInstanceSeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("Spine Instance Segmentation")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []
        self.parent.contributors = ["SpineInstanceSeg developers"]
        self.parent.helpText = _(
            "Segments every vertebra of a spine CT or MRI as its own segment (named by level when it can be "
            "determined, else 'Vertebra 1', 'Vertebra 2', ... from the top) and places one point per vertebra at "
            "its centroid. Two stages: an nnU-Net semantic segmentation of the spine, then a windowed multi-scale "
            "3D U-Net that separates the vertebrae (Yuan Meng et al., 2025). The bundled demo models are trained "
            "on synthetic phantoms: check every result before clinical or research use. Needs 3D Slicer {minimum} or "
            "later and the PyTorch extension."
        ).format(minimum=".".join(str(v) for v in MINIMUM_SLICER_VERSION))
        self.parent.acknowledgementText = _(
            "Method: 'Two-stage 3D spine instance segmentation based on local window iteration' (Yuan Meng et al., "
            "2025). Stage 1 uses nnU-Net v2 (Isensee et al.)."
        )


#
# Parameter node
#


class ModelSource(enum.Enum):
    BUNDLED = "bundled"
    CUSTOM = "custom"
    MASK = "mask"
    TOTALSEGMENTATOR = "totalsegmentator"

    def label(self):
        return {
            ModelSource.BUNDLED: _("Bundled demo models"),
            ModelSource.CUSTOM: _("My stage-1 nnU-Net + stage-2 models"),
            ModelSource.MASK: _("Existing segmentation as stage 1"),
            ModelSource.TOTALSEGMENTATOR: _("TotalSegmentator as stage 1 (installed separately)"),
        }[self]


class Device(enum.Enum):
    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"

    def label(self):
        return {Device.AUTO: _("Auto (GPU if available)"), Device.CPU: _("CPU"), Device.CUDA: _("GPU (CUDA)")}[self]


@parameterNodeWrapper
class SpineInstanceSegParameterNode:
    """Inputs and outputs of the module (saved with the scene).

    inputVolume - CT or MRI volume of the spine.
    modelSource - bundled models, the user's own models, an existing segmentation used as stage 1, or
        TotalSegmentator as stage 1 (its CT task total or MRI task total_mr, chosen by the library).
    stage1Model / stage2Model - model folders for ModelSource.CUSTOM (an empty stage-2 folder: bundled stage 2).
    stage1Mask / maskConvention - the existing segmentation for ModelSource.MASK and its label convention.
    device - where the networks run.
    levelAnchor / lowestLevel - optional levels of the top / bottom vertebra in view (e.g. "C2", "L5").
    includeDiscsAndCanal - also add discs, canal and sacrum as segments.
    fastStage1 - stage 1 without test-time mirroring (about 8x faster on a CPU, slightly less accurate); with
        TotalSegmentator its 3 mm model.
    outputSegmentation / outputMarkups - output nodes (created when empty).
    """

    inputVolume: vtkMRMLScalarVolumeNode
    modelSource: ModelSource = ModelSource.BUNDLED
    stage1Model: pathlib.Path = pathlib.Path()
    stage2Model: pathlib.Path = pathlib.Path()
    stage1Mask: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode]  # noqa: UP007 (Slicer's Python may be 3.9)
    maskConvention: Annotated[str, Choice(list(MASK_CONVENTIONS))] = "semantic"
    device: Device = Device.AUTO
    levelAnchor: str = ""
    lowestLevel: str = ""
    includeDiscsAndCanal: bool = True
    fastStage1: bool = False
    outputSegmentation: vtkMRMLSegmentationNode
    outputMarkups: vtkMRMLMarkupsFiducialNode


#
# Widget
#


class SpineInstanceSegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._timer = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        problem = slicerVersionProblem(_runningSlicerVersion(), sys.version_info)
        if problem:
            self._showVersionProblem(problem)
            return
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SpineInstanceSeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SpineInstanceSegLogic()

        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self.onPoll)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.segmentButton.connect("clicked(bool)", self.onSegmentButton)
        self.ui.cancelButton.connect("clicked(bool)", self.onCancelButton)
        self.ui.exportStlButton.connect("clicked(bool)", self.onExportStl)
        self.ui.exportLabelmapButton.connect("clicked(bool)", self.onExportLabelmap)
        self.ui.exportSegNrrdButton.connect("clicked(bool)", self.onExportSegNrrd)

        self.initializeParameterNode()

    def _showVersionProblem(self, problem) -> None:
        """An old Slicer: the panel says which Slicer is needed instead of failing on the library's imports."""
        label = qt.QLabel(problem)
        label.wordWrap = True
        label.setStyleSheet("color: #b00020; font-weight: bold;")
        self.layout.addWidget(label)
        self.layout.addStretch(1)
        logging.error(problem)

    def cleanup(self) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
            self._job.poll()
        self.removeObservers()

    def enter(self) -> None:
        if self.logic is not None:
            self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateWidgets)

    def onSceneStartClose(self, caller, event) -> None:
        if self._job is not None and self._job.running:
            self._job.cancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if first and not first.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = first

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateWidgets)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateWidgets)
            self._updateWidgets()

    def _updateWidgets(self, caller=None, event=None) -> None:
        """Enable/show controls from the parameters (no computation here)."""
        p = self._parameterNode
        if p is None:
            return
        running = self._job is not None and self._job.running
        custom = p.modelSource == ModelSource.CUSTOM
        mask = p.modelSource == ModelSource.MASK
        totalseg = p.modelSource == ModelSource.TOTALSEGMENTATOR
        for widget in (self.ui.stage1ModelLabel, self.ui.stage1ModelPathLineEdit):
            widget.visible = custom
        for widget in (self.ui.stage2ModelLabel, self.ui.stage2ModelPathLineEdit):
            widget.visible = custom or mask or totalseg
        for widget in (self.ui.stage1MaskLabel, self.ui.stage1MaskSelector):
            widget.visible = mask
        # A segmentation node is read by segment names and terminology; only a labelmap needs its convention.
        labelmap = p.stage1Mask is None or p.stage1Mask.IsA("vtkMRMLLabelMapVolumeNode")
        for widget in (self.ui.maskConventionLabel, self.ui.maskConventionComboBox):
            widget.visible = mask and labelmap
        problem = self.logic.inputProblem(p)
        self.ui.segmentButton.enabled = not running and problem is None
        self.ui.segmentButton.toolTip = problem or _(
            "Segment every vertebra of the input volume (runs in the background)."
        )
        self.ui.cancelButton.enabled = running
        self.ui.inputsCollapsibleButton.enabled = not running
        has_result = (
            p.outputSegmentation is not None and p.outputSegmentation.GetSegmentation().GetNumberOfSegments() > 0
        )
        for button in (self.ui.exportStlButton, self.ui.exportSegNrrdButton):
            button.enabled = has_result and not running
        self.ui.exportLabelmapButton.enabled = has_result and not running and p.inputVolume is not None

    # ---------------------------------------------------------------- run
    def onSegmentButton(self) -> None:
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("Failed to start the segmentation."), waitCursor=True):
            outcome = self.logic.ensureDependencies(confirm=self._confirmInstall)
            if outcome.declined:
                return
            if outcome.not_installed_in_testing:
                slicer.util.warningDisplay(
                    _("Slicer runs in testing mode and installs no Python packages; missing: {packages}.").format(
                        packages=", ".join(outcome.not_installed_in_testing)
                    )
                )
                return
            if outcome.restart_needed:
                question = _("Packages were updated that Slicer had already loaded ({packages}). Restart Slicer now?")
                restart = slicer.util.confirmYesNoDisplay(question.format(packages=", ".join(outcome.restart_needed)))
                if restart and not slicer.app.testingEnabled():  # a test must never restart the application
                    slicer.util.restart()
                return
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.ui.stepLabel.text = _("Starting...")
            self._job = self.logic.startSegmentation(
                p, on_progress=self.onProgress, on_log=self.onLog, on_done=self.onDone
            )
            self._timer.start()
        self._updateWidgets()

    def _confirmInstall(self, text) -> bool:
        return slicer.util.confirmOkCancelDisplay(text, windowTitle=_("Install Python packages"))

    def onPoll(self) -> None:
        if self._job is None or not self._job.poll():
            self._timer.stop()
            self._updateWidgets()

    def onProgress(self, step, fraction, message) -> None:
        self.ui.progressBar.value = int(round(1000 * max(0.0, min(1.0, fraction))))
        self.ui.stepLabel.text = f"{self.logic.stepTitle(step)}: {message}" if message else self.logic.stepTitle(step)

    def onLog(self, line) -> None:
        self.ui.logTextEdit.appendPlainText(line)

    def onDone(self, nodes, error) -> None:
        self._timer.stop()
        if nodes is not None:
            self._parameterNode.outputSegmentation = nodes.segmentation
            self._parameterNode.outputMarkups = nodes.markups
            nodes.segmentation.CreateClosedSurfaceRepresentation()
            self.ui.progressBar.value = 1000
            count = len(self.logic.vertebraSegmentIds(nodes.segmentation))
            self.ui.stepLabel.text = _("Done: {count} vertebrae.").format(count=count)
        elif error == "cancelled":
            self.ui.stepLabel.text = _("Cancelled.")
        else:
            self.ui.stepLabel.text = _("Failed.")
            self.ui.logCollapsibleButton.collapsed = False
            slicer.util.errorDisplay(_("Segmentation failed: {error}").format(error=error))
        self._updateWidgets()

    def onCancelButton(self) -> None:
        if self._job is not None:
            self.ui.stepLabel.text = _("Cancelling...")
            self._job.cancel()

    # ---------------------------------------------------------------- exports
    def onExportStl(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(None, _("Folder for the STL files"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("STL export failed."), waitCursor=True):
                files = self.logic.exportStl(self._parameterNode.outputSegmentation, folder)
                slicer.util.infoDisplay(
                    _("Wrote {count} STL files to {folder}.").format(count=len(files), folder=folder)
                )

    def onExportLabelmap(self) -> None:
        path = qt.QFileDialog.getSaveFileName(None, _("Save label map"), "", _("NRRD (*.nrrd)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Label map export failed."), waitCursor=True):
                self.logic.exportLabelmap(self._parameterNode.outputSegmentation, path, self._parameterNode.inputVolume)

    def onExportSegNrrd(self) -> None:
        path = qt.QFileDialog.getSaveFileName(None, _("Save segmentation"), "", _("Slicer segmentation (*.seg.nrrd)"))
        if path:
            with slicer.util.tryWithErrorDisplay(_("Segmentation export failed."), waitCursor=True):
                self.logic.exportSegNrrd(self._parameterNode.outputSegmentation, path)


#
# Logic: parameters -> library calls (no algorithm here)
#


class SpineInstanceSegLogic(ScriptedLoadableModuleLogic):
    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)

    def getParameterNode(self):
        return SpineInstanceSegParameterNode(super().getParameterNode())

    @staticmethod
    def stepTitle(step) -> str:
        titles = {
            "segment": _("Preparing"),
            "stage1": _("Stage 1: spine"),
            "stage2": _("Stage 2: vertebrae"),
            "writing outputs": _("Writing results"),
        }
        return titles.get(step, step)

    @staticmethod
    def inputProblem(p):
        """Why the inputs cannot be segmented yet (``None`` when they can)."""
        if p.inputVolume is None:
            return _("Select an input volume.")
        if p.modelSource == ModelSource.CUSTOM and str(p.stage1Model) in ("", "."):
            return _("Select the stage-1 nnU-Net model folder.")
        if p.modelSource == ModelSource.MASK and p.stage1Mask is None:
            return _("Select the existing segmentation to use as stage 1.")
        if p.modelSource == ModelSource.TOTALSEGMENTATOR:
            from spineinstanceseg.stage1.totalseg_adapter import INSTALL_FIX, totalsegmentator_available

            if not totalsegmentator_available():
                return _("The TotalSegmentator package is not installed: {fix}.").format(fix=INSTALL_FIX)
        return None

    @staticmethod
    def segmentOptions(p):
        """The library's run options from the parameter node."""
        from spineinstanceseg.pipeline.options import SegmentOptions

        def folder(path):
            text = str(path) if path is not None else ""
            return text if text not in ("", ".") else None

        totalseg = p.modelSource == ModelSource.TOTALSEGMENTATOR
        return SegmentOptions(
            stage1="totalsegmentator" if totalseg else "nnunet",
            totalseg_fast=totalseg and p.fastStage1,
            stage1_model=folder(p.stage1Model) if p.modelSource == ModelSource.CUSTOM else None,
            stage2_model=folder(p.stage2Model) if p.modelSource != ModelSource.BUNDLED else None,
            mask_convention=p.maskConvention if p.modelSource == ModelSource.MASK else "semantic",
            device=p.device.value,
            anchor=p.levelAnchor.strip().upper() or None,
            lowest=p.lowestLevel.strip().upper() or None,
            stage1_mirroring=False if p.fastStage1 and not totalseg else None,
        )

    @staticmethod
    def ensureDependencies(confirm):
        from spineinstanceseg.slicer.dependencies import ensure_dependencies

        return ensure_dependencies(confirm=confirm)

    @staticmethod
    def prepareSelfTest():
        """``None`` when the self-test can segment, else why it skips (see dependencies.prepare_self_test)."""
        from spineinstanceseg.slicer.dependencies import prepare_self_test

        return prepare_self_test()

    def startSegmentation(self, p, on_progress=None, on_log=None, on_done=None):
        """Start a background run for the parameter node; the caller polls the returned job from a timer."""
        from spineinstanceseg.slicer.job import SegmentJob

        job = SegmentJob(
            p.inputVolume,
            self.segmentOptions(p),
            mask_node=p.stage1Mask if p.modelSource == ModelSource.MASK else None,
            segmentation_node=p.outputSegmentation,
            markups_node=p.outputMarkups,
            include_semantic=p.includeDiscsAndCanal,
            on_progress=on_progress,
            on_log=on_log,
            on_done=on_done,
        )
        job.start()
        return job

    @staticmethod
    def segmentVolume(volumeNode, outDir=None, timeout=None, **options):
        """Blocking run on one volume node (scripts, self-test); see spineinstanceseg.slicer.console."""
        from spineinstanceseg.slicer.console import segment_volume_node

        return segment_volume_node(volumeNode, out_dir=outDir, timeout=timeout, on_log=logging.info, **options)

    @staticmethod
    def segmentFolder(inputDir, outDir, **options):
        """Blocking run on every image in a folder, like ``spineseg batch``; returns the summary rows."""
        from spineinstanceseg.slicer.console import segment_folder

        return segment_folder(inputDir, outDir, on_log=logging.info, **options)

    @staticmethod
    def startSegmentFolder(inputDir, outDir, onDone=None, **options):
        """Background run on every image in a folder (the GUI stays responsive); returns a BackgroundRun."""
        from spineinstanceseg.slicer.console import start_folder

        return start_folder(inputDir, outDir, on_log=logging.info, on_done=onDone, **options)

    @staticmethod
    def vertebraSegmentIds(segmentationNode):
        from spineinstanceseg.slicer.mrml_adapter import vertebra_segment_ids

        return vertebra_segment_ids(segmentationNode)

    @staticmethod
    def exportStl(segmentationNode, folder):
        from spineinstanceseg.slicer.exports import export_stl

        return export_stl(segmentationNode, folder)

    @staticmethod
    def exportLabelmap(segmentationNode, path, referenceVolumeNode):
        from spineinstanceseg.slicer.exports import export_labelmap_nrrd

        return export_labelmap_nrrd(segmentationNode, path, reference_volume_node=referenceVolumeNode)

    @staticmethod
    def exportSegNrrd(segmentationNode, path):
        from spineinstanceseg.slicer.exports import export_seg_nrrd

        return export_seg_nrrd(segmentationNode, path)


#
# Self-test (runs in the Slicer application: Reload and Test, or ctest)
#


class SpineInstanceSegTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()
        problem = slicerVersionProblem(_runningSlicerVersion(), sys.version_info)
        if problem:  # an old Slicer cannot import the library at all
            self.skipTest(problem)

    def runTest(self):
        self._runOrSkip(self.test_parameter_node_to_options)
        self._runOrSkip(self.test_segment_example_with_bundled_models)

    def _runOrSkip(self, test):
        """Run one test after setUp; a skip (e.g. packages not installed on a clean Slicer) is shown, not turned into a
        failure (ctest runs the test_* methods through unittest, which reports the skip itself)."""
        try:
            self.setUp()
            test()
        except unittest.SkipTest as skip:
            logging.warning(f"{test.__name__} skipped: {skip}")
            self.delayDisplay(f"Skipped: {skip}")

    def test_parameter_node_to_options(self):
        """The widget's parameters reach the library as run options."""
        logic = SpineInstanceSegLogic()
        p = logic.getParameterNode()
        p.modelSource = ModelSource.MASK
        p.maskConvention = "totalseg_total"
        p.device = Device.CPU
        p.levelAnchor = " c2 "
        p.fastStage1 = True
        options = logic.segmentOptions(p)
        self.assertIs(options.stage1_mirroring, False)
        self.assertEqual(options.mask_convention, "totalseg_total")
        self.assertEqual(options.device, "cpu")
        self.assertEqual(options.anchor, "C2")
        self.assertIsNone(options.stage1_model)
        self.assertIsNotNone(logic.inputProblem(p))  # no input volume and no mask yet
        p.modelSource = ModelSource.TOTALSEGMENTATOR
        options = logic.segmentOptions(p)
        self.assertEqual(options.stage1, "totalsegmentator")
        self.assertIs(options.totalseg_fast, True)  # the fast check box: TotalSegmentator's 3 mm model
        self.assertIsNone(options.stage1_mirroring)

    def test_segment_example_with_bundled_models(self):
        """The built-in example (a synthetic lumbar CT) through the real pipeline (bundled models, child process)
        into the scene.

        Skips (with the reason) when the packages are missing: Slicer installs nothing in testing mode, and
        SPINEINSTANCESEG_INSTALL_IN_TESTING=1 lets this test install them.
        """
        reason = SpineInstanceSegLogic.prepareSelfTest()  # before any import that needs the packages
        if reason:
            self.skipTest(reason)
        import numpy as np

        from spineinstanceseg.examples import EXAMPLE_NAME, example_case
        from spineinstanceseg.io import read_label_map, read_volume
        from spineinstanceseg.slicer.mrml_adapter import vertebra_segment_ids
        from spineinstanceseg.slicer.volume_nodes import RAS_FROM_LPS, volume_to_node

        self.delayDisplay("Loading the built-in example (a lumbar CT phantom)")
        case = example_case()
        volumeNode = volume_to_node(read_volume(case.image), slicer.mrmlScene, name=EXAMPLE_NAME)
        reference = read_label_map(case.instances)
        logic = SpineInstanceSegLogic()

        self.delayDisplay("Segmenting (bundled models, CPU)")
        outDir = tempfile.mkdtemp(prefix="SpineInstanceSegTest-")
        nodes = logic.segmentVolume(volumeNode, outDir=outDir, timeout=1800, device="cpu")

        codes = [int(c) for c in np.unique(reference.array) if 0 < c != 26]  # vertebrae, not the sacrum
        truth = {c: reference.index_to_world(np.argwhere(reference.array == c).mean(axis=0)) for c in codes}
        lumbar = [code for code in truth if 20 <= code <= 24]  # L1-L5: fully in view in a lumbar phantom
        vertebrae = vertebra_segment_ids(nodes.segmentation)
        self.assertGreaterEqual(len(vertebrae), len(lumbar) - 1, "at most one lumbar vertebra may be missed")
        self.assertLessEqual(len(vertebrae), len(truth) + 1, "no more than one spurious vertebra")
        markups = nodes.markups
        self.assertEqual(markups.GetNumberOfControlPoints(), len(vertebrae))
        true_ras = np.array([(RAS_FROM_LPS[:3, :3] @ np.asarray(c)) for c in truth.values()])
        for i in range(markups.GetNumberOfControlPoints()):
            position = np.array(markups.GetNthControlPointPositionWorld(i))
            nearest = float(np.min(np.linalg.norm(true_ras - position, axis=1)))
            self.assertLess(
                nearest, 10.0, f"{markups.GetNthControlPointLabel(i)} is {nearest:.1f} mm from any vertebra"
            )
        ref = nodes.segmentation.GetNodeReferenceID(nodes.segmentation.GetReferenceImageGeometryReferenceRole())
        self.assertEqual(ref, volumeNode.GetID())

        self.delayDisplay("Exporting")
        stl = logic.exportStl(nodes.segmentation, os.path.join(outDir, "stl-export"))
        self.assertGreaterEqual(len(stl), len(vertebrae))
        seg = logic.exportSegNrrd(nodes.segmentation, os.path.join(outDir, "export.seg.nrrd"))
        self.assertTrue(os.path.getsize(seg) > 0)
        self.assertTrue(os.path.isfile(os.path.join(outDir, EXAMPLE_NAME, f"{EXAMPLE_NAME}_report.json")))
        self.delayDisplay("Test passed")
