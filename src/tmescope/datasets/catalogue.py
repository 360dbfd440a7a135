"""The biology of the synthetic tissue: cell types, their marker genes and the regions they form.

Marker symbols are canonical human markers (see ../shared/reference/tme-markers.md); the tumour
is osteosarcoma-like, as the users study bone tumours. Everything here is data, shared by the
layout (which cell goes where), the renderer (what it looks like) and the counts (what it
expresses), so that image, counts and ground truth tell the same story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class CellType:
    """One population: its marker genes and how many UMIs one drawn cell adds to its spot."""

    name: str
    markers: tuple[str, ...]
    umi: float  # mean UMIs per drawn nucleus (per red cell for erythrocytes)


CELL_TYPES: Final = (
    CellType(
        "tumour",
        ("SATB2", "RUNX2", "ALPL", "SP7", "CDK4", "MDM2", "MKI67", "TOP2A", "CENPF", "PCNA"),
        180.0,
    ),
    CellType(
        "fibroblast", ("COL1A1", "COL1A2", "COL3A1", "DCN", "LUM", "PDGFRA", "FAP", "POSTN"), 100.0
    ),
    CellType(
        "t_cell",
        ("CD3D", "CD3E", "CD3G", "CD2", "TRAC", "CD8A", "CD8B", "GZMK", "GZMB", "PRF1", "NKG7"),
        60.0,
    ),
    CellType("b_cell", ("MS4A1", "CD79A", "CD79B", "CD19", "BANK1"), 70.0),
    CellType(
        "macrophage", ("CD68", "CD163", "C1QA", "C1QB", "C1QC", "CSF1R", "MRC1", "LYZ"), 140.0
    ),
    CellType("endothelial", ("PECAM1", "VWF", "CDH5", "CLDN5", "KDR", "EMCN"), 90.0),
    CellType("erythrocyte", ("HBB", "HBA1", "HBA2"), 12.0),
    CellType(
        "osteoclast", ("ACP5", "CTSK", "MMP9", "OCSTAMP", "DCSTAMP", "CALCR", "NFATC1"), 150.0
    ),
    CellType("necrotic", ("MT-CO1", "MT-ND1", "MT-CYB"), 15.0),
)
TYPE_NAMES: Final = tuple(t.name for t in CELL_TYPES)
TYPE_INDEX: Final = {name: i for i, name in enumerate(TYPE_NAMES)}

REGIONS: Final = ("stroma", "tumour", "immune", "vessel", "necrosis", "bone")
REGION_INDEX: Final = {name: i for i, name in enumerate(REGIONS)}

# Probability that one 8 µm grid cell of a region holds a cell of each type (the rest is
# acellular matrix). Vessels (red cells in lumens, endothelium on walls) and the osteoclasts of
# the bone region are placed as structures by the layout, on top of these.
REGION_COMPOSITION: Final[dict[str, dict[str, float]]] = {
    "stroma": {"fibroblast": 0.17, "t_cell": 0.03, "macrophage": 0.04, "endothelial": 0.02},
    "tumour": {"tumour": 0.62, "fibroblast": 0.04, "t_cell": 0.03, "macrophage": 0.05},
    "immune": {"t_cell": 0.52, "b_cell": 0.32, "macrophage": 0.06, "fibroblast": 0.02},
    "vessel": {"endothelial": 0.50, "fibroblast": 0.08},
    "necrosis": {"necrotic": 0.55, "macrophage": 0.03, "tumour": 0.03},
    "bone": {"fibroblast": 0.16, "macrophage": 0.06, "t_cell": 0.02},
}

# Immune cells infiltrating around tumour borders: extra probability per grid cell at the border,
# decaying over BORDER_INFILTRATE_UM on both sides.
BORDER_INFILTRATE: Final = {"t_cell": 0.22, "macrophage": 0.08}
BORDER_INFILTRATE_UM: Final = 60.0


@dataclass(frozen=True)
class ImmunePhenotype:
    """Where a tumour's T cells sit (Chen & Mellman 2017), as changes to the draw of T cells.

    ``nest_t_cell`` replaces the T-cell probability inside tumour nests, border infiltrate
    included; ``margin_t_cell`` adds T cells in the open tissue outside the nests, decaying
    over ``margin_um`` and none past twice that; ``t_cell_scale`` multiplies T cells everywhere
    after that (a desert's few).
    """

    name: str
    nest_t_cell: float
    margin_t_cell: float
    margin_um: float
    t_cell_scale: float
    description: str


IMMUNE_PHENOTYPES: Final = {
    p.name: p
    for p in (
        ImmunePhenotype(
            "inflamed", 0.16, 0.0, 50.0, 1.0,
            "T cells infiltrate the tumour nests, in contact with tumour cells",
        ),
        ImmunePhenotype(
            "excluded", 0.0, 0.30, 50.0, 1.0,
            "T cells gather in the stroma within ~50 µm of the nests but do not enter them",
        ),
        ImmunePhenotype(
            "desert", 0.0, 0.0, 50.0, 0.12, "few T cells anywhere, in nests or stroma"
        ),
    )
}  # fmt: skip

HOUSEKEEPING: Final = (
    "ACTB",
    "GAPDH",
    "B2M",
    "RPLP0",
    "RPS18",
    "EEF1A1",
    "TPT1",
    "FTL",
    "TMSB4X",
    "MALAT1",
)
ANTIGEN_PRESENTATION: Final = ("HLA-DRA", "HLA-DRB1", "CD74")
# Spatial effects: raised by a spot's neighbourhood, whatever the spot itself holds.
IFN_RESPONSE: Final = ("CXCL9", "CXCL10", "IFNG", "PDCD1", "STAT1", "GBP1", "IDO1", "ISG15", "IFI6")
HYPOXIA: Final = ("VEGFA", "CA9", "SLC2A1", "PGK1", "LDHA", "BNIP3", "ADM")


@dataclass(frozen=True)
class SpatialEffect:
    """A gene group multiplied by ``1 + amplitude * shape(distance / length_um)``."""

    genes: tuple[str, ...]
    amplitude: float
    length_um: float
    onset_um: float
    description: str


# Interferon signalling at the tumour-immune interface, whatever cells the spot holds.
IFN_NEAR_BORDER: Final = SpatialEffect(
    IFN_RESPONSE, 4.0, 100.0, 0.0, "1 + amplitude * exp(-border_um / length_um)"
)
# Hypoxia grows with distance from the nearest vessel.
HYPOXIA_FAR_FROM_VESSELS: Final = SpatialEffect(
    HYPOXIA, 3.0, 150.0, 50.0, "1 + amplitude * clip((vessel_um - onset_um) / length_um, 0, 1)"
)

NAMED_GENES: Final = tuple(
    dict.fromkeys(
        [
            *HOUSEKEEPING,
            *(m for t in CELL_TYPES for m in t.markers),
            *ANTIGEN_PRESENTATION,
            *IFN_RESPONSE,
            *HYPOXIA,
        ]
    )
)
