"""BANANAS-style search (White et al., AAAI 2021): a predictor ensemble plus an acquisition over mutations.

Each round (Algorithm 1 of the paper): fit the predictor on every architecture told so far, mutate the best
``num_parents`` of them into ``num_candidates`` unseen candidates, score the candidates with the acquisition
function and propose the best ``batch_size`` of them, one per :meth:`~Bananas.ask`. The first ``num_init``
proposals are random. Acquisitions:

- ``"its"``: independent Thompson sampling, one draw ``N(mean, std)`` per candidate (the paper's default);
- ``"ucb"``: ``mean + beta * std``.

On NAS-Bench-201 the default encoding is the path encoding (the paper's), one-hot elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.predictors.encodings import ENCODINGS, Encoding, make_encoding
from lightning_nas.predictors.learned import PREDICTORS, Predictor, PredictorName
from lightning_nas.sampling import derive_seed, mutate
from lightning_nas.search.base import Constraint, Mode, SearchStrategy

__all__ = ["Bananas", "default_encoding"]

Acquisition = Literal["its", "ucb"]


def default_encoding(choices: Sequence[Choice]) -> Encoding:
    """The path encoding if ``choices`` are a NAS-Bench-201 cell's (any op subset), the cell-adjacency encoding if
    they are a DARTS-style cell's, else one-hot."""
    for name in ("path", "cell-adjacency"):
        try:
            return make_encoding(name, choices)
        except ValueError:
            pass
    return make_encoding("one-hot", choices)


def _key(arch: Mapping[str, Any]) -> str:
    return json.dumps(dict(arch), sort_keys=True)


class Bananas(SearchStrategy):
    """Predictor-guided local search: ensemble + acquisition over mutations of the best architectures.

    Args:
        choices: the space's choices.
        predictor: a model name of :data:`~lightning_nas.predictors.PREDICTORS` (its std is the uncertainty).
        encoding: how the predictor sees architectures: an :class:`~lightning_nas.predictors.Encoding` of this
            space, or its name (one of :data:`~lightning_nas.predictors.ENCODINGS`: ``"one-hot"``, ``"path"``,
            ``"cell-adjacency"``; a recipe's ``strategy.options.encoding``); default: :func:`default_encoding`.
        acquisition: ``"its"`` or ``"ucb"``.
        ucb_beta: ``beta`` of ``"ucb"``.
        num_init: random architectures before the first fit.
        batch_size: proposals per fit.
        num_candidates: mutations scored per fit.
        num_parents: the best trials the candidates are mutated from.
        metric, mode, constraints, seed, max_tries: see :class:`~lightning_nas.search.base.SearchStrategy`.

    Example:
        >>> from lightning_nas.search import run_search
        >>> choices = [Choice(f"c{i}", (0, 1, 2)) for i in range(6)]
        >>> strategy = Bananas(choices, predictor="ridge", num_init=8, seed=0)
        >>> run_search(strategy, lambda arch: {"accuracy": sum(arch.values())}, 40).metrics["accuracy"]
        12.0
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        *,
        predictor: PredictorName = "mlp_ensemble",
        encoding: Encoding | str | None = None,
        acquisition: Acquisition = "its",
        ucb_beta: float = 0.5,
        num_init: int = 10,
        batch_size: int = 10,
        num_candidates: int = 100,
        num_parents: int = 10,
        metric: str = "accuracy",
        mode: Mode = "max",
        constraints: Sequence[Constraint] = (),
        seed: int = 0,
        max_tries: int = 1000,
    ) -> None:
        super().__init__(choices, metric=metric, mode=mode, constraints=constraints, seed=seed, max_tries=max_tries)
        if predictor not in PREDICTORS:
            raise ValueError(f"unknown predictor {predictor!r}; valid predictors: {', '.join(PREDICTORS)}")
        if acquisition not in ("its", "ucb"):
            raise ValueError(f"acquisition must be 'its' or 'ucb', got {acquisition!r}")
        if num_init < 2 or batch_size < 1 or num_candidates < batch_size or num_parents < 1:
            raise ValueError(
                "need num_init >= 2, batch_size >= 1, num_candidates >= batch_size, num_parents >= 1; got "
                f"{num_init=}, {batch_size=}, {num_candidates=}, {num_parents=}"
            )
        if isinstance(encoding, str):
            encoding = make_encoding(encoding, self.choices)
        elif encoding is None:
            encoding = default_encoding(self.choices)
        elif not isinstance(encoding, Encoding):
            raise TypeError(
                f"encoding must be an Encoding or one of the names {', '.join(ENCODINGS)}; got {encoding!r}"
            )
        if [c.name for c in encoding.choices] != [c.name for c in self.choices]:
            raise ValueError(
                f"the {encoding.name} encoding is of another space (choices {[c.name for c in encoding.choices]}); "
                f"this search's choices are {[c.name for c in self.choices]}"
            )
        self.encoding = encoding
        self.predictor_name: PredictorName = predictor
        self.acquisition, self.ucb_beta = acquisition, ucb_beta
        self.num_init, self.batch_size = num_init, batch_size
        self.num_candidates, self.num_parents = num_candidates, num_parents
        self.seed = seed
        self.queue: list[Arch] = []

    def propose(self) -> Arch:
        if self.queue:
            return self.queue.pop(0)
        if len(self.history) < self.num_init:
            return self.random_arch()
        self.queue = self._next_batch()
        return self.queue.pop(0)

    def _next_batch(self) -> list[Arch]:
        """Fit on the history, then the ``batch_size`` unseen mutations of the best that the acquisition ranks top."""
        predictor = Predictor(
            self.encoding, self.predictor_name, seed=derive_seed(self.seed, "bananas", len(self.history)) % 2**31
        )
        predictor.fit([t.arch for t in self.history], [self.score(t) for t in self.history])
        candidates = self._candidates()
        mean, std = predictor.predict(candidates)
        if self.acquisition == "its":
            draws = torch.randn(len(candidates), generator=self.generator, dtype=torch.float64).numpy()
            value = mean + std * draws
        else:
            value = mean + self.ucb_beta * std
        order = np.argsort(-value, kind="stable")[: self.batch_size]
        return [candidates[i] for i in order]

    def _candidates(self) -> list[Arch]:
        seen = {_key(t.arch) for t in self.history}
        parents = sorted(self.history, key=self.score, reverse=True)[: self.num_parents]
        candidates: dict[str, Arch] = {}
        for attempt in range(20 * self.num_candidates):
            if len(candidates) >= self.num_candidates:
                break
            child = mutate(parents[attempt % len(parents)].arch, self.choices, self.generator)
            key = _key(child)
            if key not in seen and key not in candidates:
                candidates[key] = child
        while len(candidates) < self.batch_size:  # a small space nearly exhausted around the parents
            child = self.random_arch()
            candidates[_key(child)] = child
        return list(candidates.values())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "queue": [dict(a) for a in self.queue]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.queue = [dict(a) for a in state["queue"]]
