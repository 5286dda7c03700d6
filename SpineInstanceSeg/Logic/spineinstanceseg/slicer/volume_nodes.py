"""MRML volume nodes <-> :class:`~spineinstanceseg.volume.Volume`, the one place where RAS meets LPS.

Slicer stores a volume as voxels plus an ``IJKToRAS`` matrix (RAS mm, local coordinates of the node) and an
optional parent transform to world. The library uses ITK index order ``[i, j, k]`` and LPS mm
(``LPS = diag(-1, -1, 1) @ RAS``). VTK image scalars are stored x fastest, so the numpy view of a
``vtkImageData`` has shape ``(nz, ny, nx)``; it is transposed here and nowhere else.

Parent transforms: :func:`volume_from_node` composes a *linear* parent transform into the geometry by default
(``world=True``), so the pipeline sees the patient as displayed. A rigid transform, or one that only scales
along the image axes, keeps the voxel grid (no resampling); shearing or non-linear transforms cannot be
represented by a voxel grid and raise :class:`~spineinstanceseg.errors.InputError` telling the user to harden
the transform. Results are put back under the same parent transform (see :mod:`.mrml_adapter`), so the
library's world grid and the node's local grid share voxel indices.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError
from ..volume import Volume

__all__ = [
    "RAS_FROM_LPS",
    "vtk_matrix_to_numpy",
    "numpy_to_vtk_matrix",
    "parent_to_world_matrix",
    "ijk_to_ras_matrix",
    "node_geometry",
    "volume_from_node",
    "volume_to_node",
    "update_volume_node",
]

# LPS <-> RAS: negate x and y (the matrix is its own inverse).
RAS_FROM_LPS: NDArray = np.diag([-1.0, -1.0, 1.0, 1.0])

_ORTHO_TOL = 1e-4


def vtk_matrix_to_numpy(matrix) -> NDArray:
    """A ``vtkMatrix4x4`` as a 4x4 float array."""
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)], dtype=float)


def numpy_to_vtk_matrix(array: NDArray):
    """A 4x4 array as a new ``vtkMatrix4x4``."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, float(array[r, c]))
    return matrix


def parent_to_world_matrix(node) -> NDArray:
    """4x4 matrix mapping the node's local RAS to world RAS (identity without a parent transform).

    Raises:
        InputError: the parent transform is not linear (a warp cannot be folded into a voxel grid).
    """
    transform = node.GetParentTransformNode()
    if transform is None:
        return np.eye(4)
    if not transform.IsTransformToWorldLinear():
        raise InputError(
            f"the volume {node.GetName()!r} is under a non-linear transform",
            fix="harden the transform on the volume (Data module: right-click the transform > Harden transform) "
            "or remove it, then run again",
        )
    import vtk

    matrix = vtk.vtkMatrix4x4()
    transform.GetMatrixTransformToWorld(matrix)
    return vtk_matrix_to_numpy(matrix)


def ijk_to_ras_matrix(node, *, world: bool = True) -> NDArray:
    """The node's voxel-index -> RAS matrix, local or composed with its parent transform (``world=True``)."""
    import vtk

    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    local = vtk_matrix_to_numpy(matrix)
    return parent_to_world_matrix(node) @ local if world else local


def _geometry_from_ijk_to_ras(ijk_to_ras: NDArray, *, name: str) -> tuple[tuple, tuple, NDArray]:
    """(spacing, origin, direction) in LPS from an IJK -> RAS matrix; rejects sheared grids."""
    ijk_to_lps = RAS_FROM_LPS @ ijk_to_ras
    columns = ijk_to_lps[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"the volume {name!r} has a degenerate geometry", fix="check the volume's spacing")
    direction = columns / spacing[None, :]
    if not np.allclose(direction.T @ direction, np.eye(3), atol=_ORTHO_TOL):
        raise InputError(
            f"the volume {name!r} is sheared by its parent transform, which a voxel grid cannot represent",
            fix="harden the transform on the volume (this resamples it), or remove the transform, then run again",
        )
    return tuple(spacing.tolist()), tuple(ijk_to_lps[:3, 3].tolist()), direction


def node_geometry(node, *, world: bool = True) -> tuple[tuple, tuple, NDArray]:
    """``(spacing, origin, direction)`` of a volume node in LPS, as :func:`volume_from_node` gives them (no voxels
    are copied)."""
    return _geometry_from_ijk_to_ras(ijk_to_ras_matrix(node, world=world), name=node.GetName())


def volume_from_node(node, *, world: bool = True, is_label: bool | None = None) -> Volume:
    """Copy a scalar or labelmap volume node into a :class:`Volume` (array ``[i, j, k]``, LPS mm).

    Args:
        node: ``vtkMRMLScalarVolumeNode`` or ``vtkMRMLLabelMapVolumeNode`` with image data.
        world: Compose a linear parent transform into the geometry (see module docstring); ``False`` uses the
            node's local coordinates.
        is_label: Label map or image; default: True for labelmap nodes.

    Raises:
        InputError: no voxels, several components, or a parent transform that cannot be folded in.
    """
    from vtk.util.numpy_support import vtk_to_numpy

    name = node.GetName()
    image = node.GetImageData()
    if image is None or image.GetPointData() is None or image.GetPointData().GetScalars() is None:
        raise InputError(f"the volume {name!r} has no voxel data", fix="load an image into the volume first")
    scalars = image.GetPointData().GetScalars()
    if scalars.GetNumberOfComponents() != 1:
        raise InputError(
            f"the volume {name!r} has {scalars.GetNumberOfComponents()} components per voxel",
            fix="use a single-component (greyscale) volume",
        )
    nx, ny, nz = image.GetDimensions()
    array = vtk_to_numpy(scalars).reshape(nz, ny, nx).transpose(2, 1, 0).copy()
    spacing, origin, direction = _geometry_from_ijk_to_ras(ijk_to_ras_matrix(node, world=world), name=name)
    if is_label is None:
        is_label = node.IsA("vtkMRMLLabelMapVolumeNode")
    return Volume(array, spacing, origin, direction, is_label=bool(is_label))


def _image_data_from_array(array: NDArray):
    """A new ``vtkImageData`` holding ``array`` (``[i, j, k]``) with unit geometry (the node keeps geometry)."""
    import vtk
    from vtk.util.numpy_support import get_vtk_array_type, numpy_to_vtk

    data = np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0))  # x fastest, as VTK stores scalars
    if data.dtype == bool:
        data = data.astype(np.uint8)
    image = vtk.vtkImageData()
    image.SetDimensions(*array.shape)
    scalars = numpy_to_vtk(data.reshape(-1), deep=True, array_type=get_vtk_array_type(data.dtype))
    scalars.SetName("ImageScalars")
    image.GetPointData().SetScalars(scalars)
    return image


def update_volume_node(node, volume: Volume, *, local_from_world: NDArray | None = None) -> None:
    """Replace the voxels and geometry of ``node`` with ``volume``.

    Args:
        local_from_world: 4x4 RAS matrix applied to the volume's (world) geometry before it is stored, e.g. the
            inverse of the node's parent transform so that the node shows the volume at its world position.
    """
    ijk_to_ras = RAS_FROM_LPS @ volume.affine
    if local_from_world is not None:
        ijk_to_ras = np.asarray(local_from_world, dtype=float) @ ijk_to_ras
    node.SetAndObserveImageData(_image_data_from_array(np.asarray(volume.array)))
    node.SetIJKToRASMatrix(numpy_to_vtk_matrix(ijk_to_ras))
    node.Modified()


def volume_to_node(volume: Volume, scene, *, name: str = "Volume", node=None, parent_transform_id: str | None = None):
    """Add ``volume`` to ``scene`` as a volume node (a labelmap node when ``volume.is_label``).

    Args:
        node: Existing node to overwrite instead of adding a new one.
        parent_transform_id: Put the node under this transform; the volume's geometry is taken as world
            coordinates and stored relative to the transform, so it appears where ``volume`` says.
    """
    if node is None:
        cls = "vtkMRMLLabelMapVolumeNode" if volume.is_label else "vtkMRMLScalarVolumeNode"
        node = scene.AddNewNodeByClass(cls, name)
    local_from_world = None
    if parent_transform_id:
        node.SetAndObserveTransformNodeID(parent_transform_id)
        local_from_world = np.linalg.inv(parent_to_world_matrix(node))
    update_volume_node(node, volume, local_from_world=local_from_world)
    if node.GetDisplayNode() is None and hasattr(node, "CreateDefaultDisplayNodes"):
        node.CreateDefaultDisplayNodes()
    return node
