"""Candidate operations, their registry, and mixed ops."""

from lightning_nas.ops._registry import OpFactory, build_op, list_ops, register_op
from lightning_nas.ops.darts_ops import (
    DARTS_OPS,
    DilConv,
    FactorizedReduce,
    PreActivated,
    ReLUConvBN,
    SepConv,
    Zero,
)
from lightning_nas.ops.elastic import (
    ElasticBatchNorm2d,
    ElasticDepthwiseConv2d,
    ElasticInvertedResidual,
    ElasticPointwiseConv2d,
    ElasticSqueezeExcite,
)
from lightning_nas.ops.mixed import MixedOp
from lightning_nas.ops.mobile import InvertedResidual, SqueezeExcite, make_divisible

__all__ = [
    "DARTS_OPS",
    "DilConv",
    "ElasticBatchNorm2d",
    "ElasticDepthwiseConv2d",
    "ElasticInvertedResidual",
    "ElasticPointwiseConv2d",
    "ElasticSqueezeExcite",
    "FactorizedReduce",
    "InvertedResidual",
    "MixedOp",
    "OpFactory",
    "PreActivated",
    "ReLUConvBN",
    "SepConv",
    "SqueezeExcite",
    "Zero",
    "build_op",
    "list_ops",
    "make_divisible",
    "register_op",
]
