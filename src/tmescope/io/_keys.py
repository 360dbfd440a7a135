"""File, folder and column names of Space Ranger outputs, in one place.

Sources: 10x Genomics "Spatial outputs" pages for Space Ranger 1.x–3.x and the Visium HD
``binned_outputs`` layout (see ../shared/reference/spaceranger-and-scverse.md).
"""

from __future__ import annotations

from typing import Final


class VisiumFiles:
    """Names under a Space Ranger ``outs/`` folder."""

    OUTS: Final = "outs"
    SPATIAL: Final = "spatial"
    FILTERED_H5: Final = "filtered_feature_bc_matrix.h5"
    RAW_H5: Final = "raw_feature_bc_matrix.h5"
    FILTERED_MTX_DIR: Final = "filtered_feature_bc_matrix"
    RAW_MTX_DIR: Final = "raw_feature_bc_matrix"
    POSITIONS_V1: Final = "tissue_positions_list.csv"  # Space Ranger < 2.0, usually no header
    POSITIONS_V2: Final = "tissue_positions.csv"  # Space Ranger >= 2.0, header
    POSITIONS_PARQUET: Final = "tissue_positions.parquet"  # Visium HD
    SCALEFACTORS: Final = "scalefactors_json.json"
    HIRES_IMAGE: Final = "tissue_hires_image.png"
    LOWRES_IMAGE: Final = "tissue_lowres_image.png"
    BINNED_OUTPUTS: Final = "binned_outputs"
    HD_BIN_PREFIX: Final = "square_"


class MtxFiles:
    """Names inside a Matrix Market count folder (Cell Ranger 3+ and legacy 2.x)."""

    MATRIX: Final = ("matrix.mtx.gz", "matrix.mtx")
    BARCODES: Final = ("barcodes.tsv.gz", "barcodes.tsv")
    FEATURES: Final = ("features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")


class PositionColumns:
    """Columns of the tissue positions table, in the order Space Ranger writes them."""

    BARCODE: Final = "barcode"
    IN_TISSUE: Final = "in_tissue"
    ARRAY_ROW: Final = "array_row"
    ARRAY_COL: Final = "array_col"
    PXL_ROW: Final = "pxl_row_in_fullres"  # y
    PXL_COL: Final = "pxl_col_in_fullres"  # x
    ALL: Final = (BARCODE, IN_TISSUE, ARRAY_ROW, ARRAY_COL, PXL_ROW, PXL_COL)


class ScalefactorKeys:
    """Keys of ``scalefactors_json.json`` (Visium, plus the Visium HD additions)."""

    HIRES: Final = "tissue_hires_scalef"
    LOWRES: Final = "tissue_lowres_scalef"
    SPOT_DIAMETER: Final = "spot_diameter_fullres"
    FIDUCIAL_DIAMETER: Final = "fiducial_diameter_fullres"
    BIN_SIZE_UM: Final = "bin_size_um"  # Visium HD only
    MICRONS_PER_PIXEL: Final = "microns_per_pixel"  # Visium HD only
    REGIST_TARGET: Final = "regist_target_img_scalef"  # Space Ranger >= 2.1 CytAssist


class H5Keys:
    """Groups and datasets of a 10x feature-barcode matrix HDF5 file."""

    MATRIX: Final = "matrix"
    DATA: Final = "data"
    INDICES: Final = "indices"
    INDPTR: Final = "indptr"
    SHAPE: Final = "shape"
    BARCODES: Final = "barcodes"
    FEATURES: Final = "features"
    FEATURE_ID: Final = "id"
    FEATURE_NAME: Final = "name"
    FEATURE_TYPE: Final = "feature_type"
    GENOME: Final = "genome"
    LEGACY_GENE_IDS: Final = "genes"  # Cell Ranger 2 layout: one group per genome
    LEGACY_GENE_NAMES: Final = "gene_names"
    GENE_EXPRESSION: Final = "Gene Expression"


# Visium geometry (10x Genomics): 55 µm spots, 100 µm centre to centre on a hexagonal lattice.
VISIUM_SPOT_DIAMETER_UM: Final = 55.0
VISIUM_SPOT_PITCH_UM: Final = 100.0
# Visium HD: Space Ranger's finest square bins; every other size is a sum of them.
HD_FINEST_BIN_UM: Final = 2


class SampleSheetColumns:
    """Columns of a sample sheet with a meaning of their own; every other column is metadata."""

    SAMPLE: Final = "sample"  # the sample id
    PATH: Final = "path"  # a Space Ranger folder
    SLIDE: Final = "slide"  # an H&E-only slide
    IMAGE: Final = "image"  # the full-resolution H&E of a path row
    MPP: Final = "mpp"  # µm per pixel of a slide row
    BIN_SIZE: Final = "bin_size_um"  # the Visium HD bin size of a path row (as --bin-size)
    ALL: Final = (SAMPLE, PATH, SLIDE, IMAGE, MPP, BIN_SIZE)
