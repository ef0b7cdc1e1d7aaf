"""Search spaces: supernets whose decisions are named choices. No training logic lives here."""

from lightning_nas.spaces.base import DifferentiableSpace, NodeChoice, SearchSpace
from lightning_nas.spaces.darts_cell import DartsCellSpace, derive_genotype
from lightning_nas.spaces.darts_network import AuxiliaryHead, DartsNetwork, drop_path
from lightning_nas.spaces.elastic import ElasticSpace, elastic_space_from_config
from lightning_nas.spaces.elastic_mobilenet import ElasticMobileNetV3
from lightning_nas.spaces.enas_macro import EnasMacroNetwork, EnasMacroSpace
from lightning_nas.spaces.genotypes import DARTS_V1, DARTS_V2, PUBLISHED_GENOTYPES
from lightning_nas.spaces.nasbench201 import (
    NB201_EDGES,
    NasBench201Format,
    NasBench201Network,
    NasBench201Space,
    ResidualReduction,
)

__all__ = [
    "DARTS_V1",
    "DARTS_V2",
    "NB201_EDGES",
    "PUBLISHED_GENOTYPES",
    "AuxiliaryHead",
    "DartsCellSpace",
    "DartsNetwork",
    "DifferentiableSpace",
    "NasBench201Format",
    "NasBench201Network",
    "NasBench201Space",
    "ResidualReduction",
    "EnasMacroNetwork",
    "EnasMacroSpace",
    "NodeChoice",
    "ElasticMobileNetV3",
    "ElasticSpace",
    "SearchSpace",
    "derive_genotype",
    "drop_path",
    "elastic_space_from_config",
]
