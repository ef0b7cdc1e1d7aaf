"""Progressive NAS (Liu et al., ECCV 2018): grow cells one block at a time, ranked by a refitted surrogate.

The space's choices are split into ordered **levels** (PNAS's blocks). Level 1's partial cells are evaluated
first (all of them, or ``beam_size`` random ones if there are more); then, level by level, every kept partial
cell is expanded with every value of the next level's choices, the surrogate (fitted on every evaluation so far,
partial cells encoded one-hot with zero blocks for undecided choices) ranks the expansions, and the top
``beam_size`` are evaluated. A partial cell is evaluated as the architecture :attr:`complete` makes of it.
Once the cell is complete and budget is left, each round evaluates the ``beam_size`` unseen one-choice mutations
of the best complete cells that the refitted surrogate ranks top.

**NAS-Bench-201's levels** are its nodes: level 1 decides edge ``1<-0``, level 2 the edges into node 2, level 3
the edges into node 3 (the output). A partial cell of level ``l`` is evaluated as the cell that ends at node
``l``: undecided edges are ``none`` except ``3<-l``, a ``skip_connect`` that makes node ``l`` the output (PNAS's
cell of ``b`` blocks, whose output is what it has built so far). Other spaces group choices by their name
without its last part (``"normal/node2/op0"`` -> ``"normal/node2"``, one node per level) and give undecided
choices their first candidate, unless ``levels`` and ``complete`` say otherwise.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.predictors.encodings import OneHotEncoding
from lightning_nas.predictors.learned import PREDICTORS, Predictor, PredictorName
from lightning_nas.sampling import derive_seed, mutate
from lightning_nas.search.base import Constraint, Mode, SearchStrategy, Trial
from lightning_nas.spaces.nasbench201 import NasBench201Format

__all__ = ["ProgressiveSearch", "default_levels", "nasbench201_complete"]

Partial = dict[str, Any]


def _key(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)


def _is_nasbench201(choices: Sequence[Choice]) -> bool:
    names = [c.name for c in NasBench201Format().choices()]
    return [c.name for c in choices] == names and all(
        "none" in c.candidates and "skip_connect" in c.candidates for c in choices
    )


def default_levels(choices: Sequence[Choice]) -> list[list[str]]:
    """NAS-Bench-201: one level per node; other spaces: choices grouped by their name's prefix, in order."""
    if _is_nasbench201(choices):
        return [["1<-0"], ["2<-0", "2<-1"], ["3<-0", "3<-1", "3<-2"]]
    groups: dict[str, list[str]] = {}
    for choice in choices:
        groups.setdefault(choice.name.rpartition("/")[0] or choice.name, []).append(choice.name)
    return list(groups.values())


def nasbench201_complete(partial: Mapping[str, Any], level: int) -> Arch:
    """The NAS-Bench-201 cell of a partial cell decided up to node ``level`` (1-3): node ``level`` is the output.

    Example:
        >>> NasBench201Format().format(nasbench201_complete({"1<-0": "nor_conv_3x3"}, 1))
        '|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|'
    """
    cell: Arch = {c.name: "none" for c in NasBench201Format().choices()}
    if level < 3:
        cell[f"3<-{level}"] = "skip_connect"
    cell.update(partial)
    return cell


class ProgressiveSearch(SearchStrategy):
    """PNAS: a beam search over growing cells under a surrogate predictor, refitted after every level.

    Args:
        choices: the space's choices.
        levels: choice names decided at each level (default :func:`default_levels`).
        complete: ``(partial, level) -> architecture`` to evaluate a partial cell (NAS-Bench-201's default:
            :func:`nasbench201_complete`; else undecided choices take their first candidate).
        beam_size: ``K``, the cells kept and evaluated per level.
        max_candidates: expansions scored per level (a seeded sample if there are more).
        predictor: the surrogate, one of :data:`~lightning_nas.predictors.PREDICTORS` (PNAS: an MLP ensemble).
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"n{i}/op", (0, 1, 2)) for i in range(4)]
        >>> strategy = ProgressiveSearch(choices, beam_size=3, predictor="ridge", seed=0)
        >>> run_search(strategy, lambda arch: {"accuracy": sum(arch.values())}, 12).metrics["accuracy"]
        8.0
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        levels: Sequence[Sequence[str]] | None = None,
        complete: Callable[[Mapping[str, Any], int], Arch] | None = None,
        beam_size: int = 10,
        max_candidates: int = 1000,
        predictor: PredictorName = "mlp_ensemble",
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; valid predictors: {', '.join(PREDICTORS)}")
        if beam_size < 1 or max_candidates < beam_size:
            raise ValueError(f"need 1 <= beam_size <= max_candidates; got {beam_size=}, {max_candidates=}")
        self.levels = [list(level) for level in (levels or default_levels(self.choices))]
        flat = [name for level in self.levels for name in level]
        names = [c.name for c in self.choices]
        if sorted(flat) != sorted(names):
            raise ValueError(f"levels must name every choice exactly once; got {flat}, the space has {names}")
        nb201 = _is_nasbench201(self.choices) and levels is None
        self.complete = complete or (nasbench201_complete if nb201 else self._first_candidates)
        self.by_name = {c.name: c for c in self.choices}
        self.beam_size, self.max_candidates = beam_size, max_candidates
        self.predictor_name: PredictorName = predictor
        self.seed = seed
        self.encoding = OneHotEncoding(self.choices, partial=True)
        self.level = 0  # levels handed out so far; len(levels) + r during the r-th refinement round
        self.queue: list[tuple[Partial, int]] = []
        self.asked: dict[str, tuple[Partial, int]] = {}
        self.records: list[tuple[Partial, int, float]] = []  # (partial cell, its level, score)

    def _first_candidates(self, partial: Mapping[str, Any], level: int) -> Arch:
        return {c.name: partial.get(c.name, c.candidates[0]) for c in self.choices}

    def propose(self) -> Arch:
        if not self.queue:
            self.queue = self._next_level()
        partial, level = self.queue.pop(0)
        arch = self.complete(partial, min(level, len(self.levels)))
        self.asked[_key(arch)] = (partial, level)
        return arch

    def tell(self, arch: Mapping[str, Any], metrics: Mapping[str, float]) -> Trial:
        trial = super().tell(arch, metrics)
        partial, level = self.asked.pop(_key(trial.arch), (dict(trial.arch), len(self.levels)))
        self.records.append((partial, level, self.score(trial)))
        return trial

    def _next_level(self) -> list[tuple[Partial, int]]:
        seen = {_key(t.arch) for t in self.history} | set(self.asked)
        if self.level == 0:
            candidates = self._expand([{}], self.levels[0])
        elif self.level < len(self.levels):
            done = [(p, s) for p, lv, s in self.records if lv == self.level]
            beam = [p for p, _ in sorted(done, key=lambda r: r[1], reverse=True)[: self.beam_size]] or [{}]
            candidates = self._expand(beam, self.levels[self.level])
        else:
            complete = sorted(self.history, key=self.score, reverse=True)[: self.beam_size]
            candidates = [mutate(t.arch, self.choices, self.generator) for t in complete for _ in range(10)]
        level = self.level + 1
        unseen: dict[str, Partial] = {}
        for partial in candidates:
            key = _key(self.complete(partial, min(level, len(self.levels))))
            if key not in seen and key not in unseen:
                unseen[key] = partial
        pool = list(unseen.values()) or [self.random_arch()]
        pool = [pool[i] for i in torch.randperm(len(pool), generator=self.generator).tolist()]  # random ties
        self.level += 1
        order = list(range(len(pool)))
        if self.level > 1 and len(self.records) >= 2:
            mean, _ = self._surrogate().predict(pool)
            order = np.argsort(-mean, kind="stable").tolist()
        return [(pool[i], level) for i in order[: self.beam_size]]

    def _expand(self, beam: Sequence[Partial], names: Sequence[str]) -> list[Partial]:
        values = list(itertools.product(*(self.by_name[n].candidates for n in names)))
        expansions = [{**partial, **dict(zip(names, combo))} for partial in beam for combo in values]
        if len(expansions) > self.max_candidates:
            picks = torch.randperm(len(expansions), generator=self.generator)[: self.max_candidates].tolist()
            expansions = [expansions[i] for i in sorted(picks)]
        return expansions

    def _surrogate(self) -> Predictor:
        seed = derive_seed(self.seed, "pnas", len(self.records)) % 2**31
        predictor = Predictor(self.encoding, self.predictor_name, seed=seed)
        return predictor.fit([p for p, _, _ in self.records], [s for _, _, s in self.records])

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "level": self.level,
            "queue": [[dict(p), lv] for p, lv in self.queue],
            "asked": {k: [dict(p), lv] for k, (p, lv) in self.asked.items()},
            "records": [[dict(p), lv, s] for p, lv, s in self.records],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.level = int(state["level"])
        self.queue = [(dict(p), int(lv)) for p, lv in state["queue"]]
        self.asked = {k: (dict(p), int(lv)) for k, (p, lv) in state["asked"].items()}
        self.records = [(dict(p), int(lv), float(s)) for p, lv, s in state["records"]]
