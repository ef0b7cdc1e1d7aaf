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
from lightning_nas.ops.enas_ops import ENAS_MACRO_OPS, ENAS_MICRO_OPS
from lightning_nas.ops.hypernet import GENERATE_SCOPES, HyperNet, encode_arch, generated_convolutions
from lightning_nas.ops.mixed import MixedOp, PartialChannelMixedOp, channel_shuffle
from lightning_nas.ops.mobile import InvertedResidual, SqueezeExcite, make_divisible
from lightning_nas.ops.nb201_ops import NB201_OPS

__all__ = [
    "DARTS_OPS",
    "GENERATE_SCOPES",
    "HyperNet",
    "encode_arch",
    "generated_convolutions",
    "ENAS_MACRO_OPS",
    "ENAS_MICRO_OPS",
    "DilConv",
    "ElasticBatchNorm2d",
    "ElasticDepthwiseConv2d",
    "ElasticInvertedResidual",
    "ElasticPointwiseConv2d",
    "ElasticSqueezeExcite",
    "FactorizedReduce",
    "InvertedResidual",
    "MixedOp",
    "PartialChannelMixedOp",
    "NB201_OPS",
    "OpFactory",
    "PreActivated",
    "ReLUConvBN",
    "SepConv",
    "SqueezeExcite",
    "Zero",
    "build_op",
    "channel_shuffle",
    "list_ops",
    "make_divisible",
    "register_op",
]
