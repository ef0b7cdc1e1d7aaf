"""Choices, architecture validation and the DARTS genotype format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightning_nas.arch import Choice, Genotype, load_arch, save_arch, validate_arch

# As printed by the DARTS reference search code (genotypes.py, DARTS_V2) with range() concats.
DARTS_V2_TEXT = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=range(2, 6), "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=range(2, 6))"
)


def test_parse_reference_string() -> None:
    g = Genotype.parse(DARTS_V2_TEXT)
    assert g.steps == 4
    assert g.normal[7] == ("dil_conv_3x3", 2)
    assert g.reduce_concat == (2, 3, 4, 5)
    assert g.ops() == {"sep_conv_3x3", "skip_connect", "dil_conv_3x3", "max_pool_3x3"}


def test_string_and_json_round_trip(tmp_path: Path) -> None:
    g = Genotype.parse(DARTS_V2_TEXT)
    assert Genotype.parse(str(g)) == g
    assert Genotype.from_json(json.dumps(g.to_json())) == g
    assert load_arch(save_arch(g, tmp_path / "g.json")) == g
    assert Genotype.from_arch(g.to_arch(), steps=4) == g


def test_arch_mapping_round_trip(tmp_path: Path) -> None:
    arch = {"a": "conv", "b": 2}
    assert load_arch(save_arch(arch, tmp_path / "a.json")) == arch


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Genotype(normal=[('sep_conv_3x3', 0)", "malformed genotype string"),
        ("__import__('os').system('echo hi')", "expected Genotype"),
        ("Genotype(normal=[(__import__('os'), 0), ('skip_connect', 1)], reduce=[])", "is not a literal"),
        ("Genotype([('a', 0)], [2], [('a', 0)], [2])", "keyword fields"),
        (
            "Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], colour=[2])",
            "genotype fields must be",
        ),
        (
            "Genotype(normal=[('a', 0), ('b', 2)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], reduce_concat=[2])",
            r"inputs must be in 0\.\.1",
        ),
        (
            "Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[3], reduce=[('a', 0), ('b', 1)], reduce_concat=[2])",
            "normal_concat",
        ),
        (
            "Genotype(normal=[('a', 0), ('b', 1)], normal_concat=[2], reduce=[('a', 0)], reduce_concat=[2])",
            "two edges per intermediate node",
        ),
        (
            "Genotype(normal=[('a', '0'), ('b', 1)], normal_concat=[2], reduce=[('a', 0), ('b', 1)], "
            "reduce_concat=[2])",
            "must be \\(op name, input index\\)",
        ),
        ("Genotype(normal=[('a', 0), ('b', 1)], normal_concat=range('x'), reduce=[('a', 0), ('b', 1)])", "range"),
    ],
)
def test_malformed_genotype_strings_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Genotype.parse(text)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("{not json", "malformed genotype JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"normal": [["a", 0]], "reduce": [["a", 0]]}', "two edges"),
        ('{"normal": "sep", "reduce": []}', "list of \\(op, input\\) pairs"),
        ('{"normal": [["a", 0, 1], ["b", 1]], "reduce": [["a", 0], ["b", 1]]}', "pair"),
    ],
)
def test_malformed_genotype_json_is_rejected(payload: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Genotype.from_json(payload)


def test_unknown_ops_named() -> None:
    g = Genotype.parse(DARTS_V2_TEXT)
    with pytest.raises(ValueError, match=r"unknown ops \['dil_conv_3x3'\]; valid ops: sep_conv_3x3"):
        g.check_ops(["sep_conv_3x3", "skip_connect", "max_pool_3x3"])


def test_validate_arch_names_bad_key_and_value() -> None:
    choices = [Choice("op", ("conv", "pool")), Choice("in", (0, 1))]
    assert validate_arch({"in": 1, "op": "pool"}, choices) == {"op": "pool", "in": 1}
    with pytest.raises(ValueError, match=r"choice 'op' got 'skip'; valid values: conv, pool"):
        validate_arch({"op": "skip", "in": 0}, choices)
    with pytest.raises(ValueError, match=r"unknown choices \['colour'\]"):
        validate_arch({"op": "conv", "in": 0, "colour": 1}, choices)
    with pytest.raises(ValueError, match=r"missing choices \['in'\]"):
        validate_arch({"op": "conv"}, choices)
    with pytest.raises(ValueError, match="got True"):
        validate_arch({"op": "conv", "in": True}, choices)


def test_load_arch_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_arch(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_arch(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ValueError, match="neither a genotype nor a mapping"):
        load_arch(tmp_path / "list.json")


def test_atomic_writes_follow_the_umask_not_mkstemps_owner_only_mode(tmp_path) -> None:
    import os
    import stat

    from lightning_nas.arch import atomic_write_text

    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "arch.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by a TensorBoard or a teammate on another account
