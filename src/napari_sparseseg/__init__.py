"""napari-sparseseg: dense 3D segmentation from sparse painted slices."""

__version__ = "0.1.0"
