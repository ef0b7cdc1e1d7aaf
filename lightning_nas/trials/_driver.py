"""The engine-free core of a multi-trial search: which architecture runs next, and what to tell the strategy.

:class:`TrialDriver` turns a :class:`~lightning_nas.search.SearchStrategy` into a queue of numbered trials under a
trial count and/or a simulated-cost budget, and records finished trials. Ray Tune drives it through
:class:`~lightning_nas.trials.searcher.StrategySearcher`; nothing here imports Ray, so the logic is tested alone.

Failures: a failed trial is recorded with its error and told to the strategy as the worst outcome, so that no
strategy waits for it or keeps re-proposing it: ``failure_value`` (default 0, the accuracy of a network that does
not work) for each ``"max"`` objective, and the largest value told so far for each ``"min"`` objective (a failed
trial is never told before a successful one gives that value; it is recorded in any case).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from lightning_nas.arch import Arch
from lightning_nas.search.base import Mode, SearchStrategy
from lightning_nas.trials._records import TrialRecord

__all__ = ["TrialDriver", "objectives_of"]

Reward = Callable[[Mapping[str, float]], Mapping[str, float]]


def objectives_of(strategy: SearchStrategy) -> dict[str, Mode]:
    """The metrics a strategy reads from a told trial: its ``objectives`` (and ``protect``) or its one metric."""
    objectives: dict[str, Mode] = dict(getattr(strategy, "objectives", None) or {strategy.metric: strategy.mode})
    objectives.update(getattr(strategy, "protect", None) or {})
    return objectives


class TrialDriver:
    """Ask a strategy for numbered trials, within ``num_trials`` and/or a ``budget`` of simulated cost.

    Args:
        strategy: any ask/tell strategy.
        num_trials: trials to run (``None``: until the budget is spent).
        budget: simulated cost available; a trial whose ``cost_of(arch)`` would overrun it is not run and the
            search ends, as in :func:`~lightning_nas.search.run_budgeted_search`.
        cost_of: the simulated cost of an architecture (required with ``budget``); without it a trial's cost is
            its wall time.
        reward: maps a trial's reported metrics to extra metrics (e.g. a MnasNet reward) before telling.
        failure_value: what a failed trial is told for each ``"max"`` objective.

    Raises:
        ValueError: neither ``num_trials`` nor ``budget``, ``num_trials < 1``, a non-positive budget, or a budget
            without ``cost_of``.
    """

    def __init__(
        self,
        strategy: SearchStrategy,
        *,
        num_trials: int | None = None,
        budget: float | None = None,
        cost_of: Callable[[Arch], float] | None = None,
        reward: Reward | None = None,
        failure_value: float = 0.0,
    ) -> None:
        if num_trials is None and budget is None:
            raise ValueError("give num_trials, budget or both: the experiment needs an end")
        if num_trials is not None and num_trials < 1:
            raise ValueError(f"num_trials must be >= 1, got {num_trials}: a search of zero trials finds nothing")
        if budget is not None and (not math.isfinite(budget) or budget <= 0):
            raise ValueError(f"budget must be a positive number, got {budget}")
        if budget is not None and cost_of is None:
            raise ValueError("a budget needs cost_of(arch), the simulated cost charged per trial")
        self.strategy, self.num_trials, self.budget, self.cost_of = strategy, num_trials, budget, cost_of
        self.reward, self.failure_value = reward, failure_value
        self.objectives = objectives_of(strategy)
        self.issued = 0
        self.spent = 0.0
        self.exhausted = False
        self.pending: dict[str, Arch] = {}
        self.costs: dict[str, float] = {}
        self.replay: list[str] = []
        self.records: list[TrialRecord] = []

    # ---------------------------------------------------------------------------------------------- asking
    def next_trial(self) -> tuple[str, Arch] | None:
        """The next ``(trial_id, arch)`` to run, or ``None`` once the planned trials are all issued."""
        if self.replay:
            trial_id = self.replay.pop(0)
            return trial_id, self.pending[trial_id]
        if self.exhausted or (self.num_trials is not None and self.issued >= self.num_trials):
            return None
        arch = self.strategy.ask()
        cost = 0.0 if self.cost_of is None else float(self.cost_of(arch))
        if self.budget is not None:
            if self.spent + cost > self.budget:
                self.exhausted = True
                return None
            self.spent += cost
        trial_id = f"{self.issued:05d}"
        self.issued += 1
        self.pending[trial_id], self.costs[trial_id] = arch, cost
        return trial_id, arch

    @property
    def done(self) -> bool:
        """Every planned trial issued and finished."""
        planned_out = self.exhausted or (self.num_trials is not None and self.issued >= self.num_trials)
        return planned_out and not self.pending

    # ---------------------------------------------------------------------------------------------- telling
    def complete(
        self, trial_id: str, metrics: Mapping[str, float] | None, *, error: str = "", wall_time_s: float = 0.0
    ) -> TrialRecord:
        """Record a finished trial and tell the strategy; ``error`` (or missing/non-finite objectives) = failed.

        Raises:
            KeyError: ``trial_id`` is not running (never issued, or already completed).
        """
        if trial_id not in self.pending:
            raise KeyError(f"trial {trial_id!r} is not running; running: {sorted(self.pending)}")
        arch = self.pending.pop(trial_id)
        values = {k: float(v) for k, v in (metrics or {}).items() if _is_number(v)}
        if not error and self.reward is not None:
            values.update({k: float(v) for k, v in self.reward(values).items()})
        if not error:
            bad = [name for name in self.objectives if not math.isfinite(values.get(name, math.nan))]
            if bad:
                error = f"trial reported no finite {', '.join(bad)} (got {values})"
        cost = self.costs.pop(trial_id, 0.0) or wall_time_s
        record = TrialRecord(trial_id, dict(arch), values, cost, "failed" if error else "ok", wall_time_s, error)
        told = {name: values[name] for name in self.objectives} if not error else self._failure_metrics()
        if told is not None:
            self.strategy.tell(arch, told)
        self.records.append(record)
        return record

    def _failure_metrics(self) -> dict[str, float] | None:
        told: dict[str, float] = {}
        for name, mode in self.objectives.items():
            if mode == "max":
                told[name] = self.failure_value
            else:
                seen = [t.metrics[name] for t in self.strategy.history if name in t.metrics]
                if not seen:
                    return None
                told[name] = max(seen)
        return told

    # ---------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed driver needs: the strategy's state, the counters, running and finished trials."""
        return {
            "strategy": self.strategy.state_dict(),
            "issued": self.issued,
            "spent": self.spent,
            "exhausted": self.exhausted,
            "pending": {k: dict(v) for k, v in self.pending.items()},
            "costs": dict(self.costs),
            "records": [r.to_dict() for r in self.records],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; trials that were running when it was saved run again first, same ids."""
        self.strategy.load_state_dict(state["strategy"])
        self.issued, self.spent, self.exhausted = int(state["issued"]), float(state["spent"]), bool(state["exhausted"])
        self.pending = {str(k): dict(v) for k, v in state["pending"].items()}
        self.costs = {str(k): float(v) for k, v in state["costs"].items()}
        self.replay = sorted(self.pending)
        self.records = [TrialRecord.from_dict(r) for r in state["records"]]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
