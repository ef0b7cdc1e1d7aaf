"""Tabular benchmarks: look architectures up in a table of results instead of training them.

A table is a CSV or JSON file with an ``arch`` column of architecture strings (e.g. NAS-Bench-201's
``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) and numeric columns (accuracies, parameters, training times). An
:class:`ArchFormat` turns a space's choice mappings into those strings and back, so any strategy queries the table
with the architectures it asks for. :func:`run_budgeted_search` runs a strategy under a simulated time budget, the
protocol of NAS-Bench-201 (Dong & Yang, ICLR 2020, Sec. 5): every query charges the architecture's training time
from a cost column, the strategy sees only the search metric (validation accuracy), and the run reports the
best-so-far architecture's value of a separate report metric (test accuracy).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lightning_nas._safe_io import read_json
from lightning_nas.arch import Arch, Choice
from lightning_nas.search.base import SearchStrategy

__all__ = ["ArchFormat", "TabularBenchmark", "TabularSearchResult", "run_budgeted_search"]


class ArchFormat(Protocol):
    """How a table spells architectures: choices, and string <-> choice mapping (e.g. ``NasBench201Format``)."""

    def choices(self) -> list[Choice]: ...

    def parse(self, text: str) -> Arch: ...

    def format(self, arch: Mapping[str, Any]) -> str: ...


class TabularBenchmark:
    """A table of evaluated architectures, queried by choice mapping or by arch string.

    Args:
        records: one mapping per architecture: the ``arch_column`` string and numeric columns. Columns whose
            values are not all numbers (and the index column) are kept out of the numeric columns.
        arch_format: parses and prints the table's arch strings.
        arch_column: the column holding the arch strings.
        index_column: the column holding the benchmark's own index; if the table has none, the row number is used.
        source: where the records come from, for messages.

    Raises:
        ValueError: no rows, no ``arch_column``, an arch string that does not parse, or two rows of one architecture.

    Example:
        >>> from lightning_nas.spaces import NasBench201Format
        >>> cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
        >>> table = TabularBenchmark([{"arch": cell, "val_acc": 91.5, "time": 120}], NasBench201Format())
        >>> table.query(cell)
        {'val_acc': 91.5, 'time': 120.0}
        >>> table.value(NasBench201Format().parse(cell), "time")
        120.0
        >>> table.value(cell, "test_acc")
        Traceback (most recent call last):
        ...
        ValueError: table <records> has no numeric column 'test_acc'; its columns: val_acc, time
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        arch_format: ArchFormat,
        *,
        arch_column: str = "arch",
        index_column: str = "index",
        source: str = "<records>",
    ) -> None:
        if not records:
            raise ValueError(f"table {source} has no rows")
        header = list(records[0])
        if arch_column not in header:
            raise ValueError(f"table {source} has no arch column {arch_column!r}; its columns: {', '.join(header)}")
        self.arch_format, self.source = arch_format, source
        self._strings: list[str] = []
        self._rows: dict[str, int] = {}
        for row, record in enumerate(records):
            key = self._canonical(str(record[arch_column]), f"row {row} of table {source}")
            if key in self._rows:
                raise ValueError(f"table {source}: rows {self._rows[key]} and {row} hold the same architecture {key}")
            self._rows[key] = row
            self._strings.append(key)
        self._columns: dict[str, list[float]] = {}
        for name in header:
            values = None if name in (arch_column, index_column) else _numbers([record.get(name) for record in records])
            if values is not None:
                self._columns[name] = values
        index_values = _numbers([record.get(index_column) for record in records]) if index_column in header else None
        self._indices = [int(v) for v in index_values] if index_values is not None else list(range(len(records)))
        self._row_of_index = {index: row for row, index in enumerate(self._indices)}

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        arch_format: ArchFormat,
        *,
        arch_column: str = "arch",
        index_column: str = "index",
    ) -> TabularBenchmark:
        """Read a ``.csv`` file (header row) or a ``.json`` file (a list of row objects, or column -> list).

        Raises:
            FileNotFoundError: no such file.
            ValueError: another suffix, malformed JSON, or any reason the constructor gives.
        """
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"table file {str(file)!r} does not exist")
        suffix = file.suffix.lower()
        if suffix == ".csv":
            try:
                with file.open(newline="", encoding="utf-8") as handle:
                    records: list[dict[str, Any]] = list(csv.DictReader(handle))
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"table file {str(file)!r} is not UTF-8 text ({err.reason} at byte {err.start})"
                ) from None
        elif suffix == ".json":
            records = _json_records(file)
        else:
            raise ValueError(f"table file {str(file)!r} must end in .csv or .json, got {suffix!r}")
        return cls(records, arch_format, arch_column=arch_column, index_column=index_column, source=str(file))

    # ------------------------------------------------------------------------------------------------ lookups
    @property
    def columns(self) -> tuple[str, ...]:
        """The numeric columns, in the file's order."""
        return tuple(self._columns)

    def __len__(self) -> int:
        return len(self._strings)

    def __iter__(self) -> Iterator[str]:
        """The arch strings, in row order."""
        return iter(self._strings)

    def choices(self) -> list[Choice]:
        """The choices of the space the table covers (from its arch format)."""
        return self.arch_format.choices()

    def column(self, name: str) -> list[float]:
        """All values of a numeric column, in row order.

        Raises:
            ValueError: no such numeric column; the message lists the columns the table has.
        """
        if name not in self._columns:
            raise ValueError(
                f"table {self.source} has no numeric column {name!r}; its columns: {', '.join(self._columns)}"
            )
        return self._columns[name]

    def value(self, arch: Mapping[str, Any] | str, column: str) -> float:
        """One column's value for ``arch``."""
        return self.column(column)[self.row(arch)]

    def query(self, arch: Mapping[str, Any] | str) -> dict[str, float]:
        """Every numeric column's value for ``arch``."""
        row = self.row(arch)
        return {name: values[row] for name, values in self._columns.items()}

    def row(self, arch: Mapping[str, Any] | str) -> int:
        """The row of ``arch`` (a choice mapping or an arch string in any spelling the format parses).

        Raises:
            ValueError: ``arch`` is not a valid architecture of the format's space.
            KeyError: a valid architecture the table does not hold.
        """
        key = self._canonical(arch, "queried architecture") if isinstance(arch, str) else self.arch_format.format(arch)
        if key not in self._rows:
            raise KeyError(f"architecture {key} is not in table {self.source} ({len(self)} rows)")
        return self._rows[key]

    def index_of(self, arch: Mapping[str, Any] | str) -> int:
        """The benchmark's own index of ``arch`` (its index column, else its row)."""
        return self._indices[self.row(arch)]

    def arch_string(self, index: int) -> str:
        """The arch string at the benchmark's ``index``.

        Raises:
            KeyError: no row has that index.
        """
        if index not in self._row_of_index:
            raise KeyError(f"table {self.source} has no architecture with index {index}")
        return self._strings[self._row_of_index[index]]

    def _canonical(self, text: str, where: str) -> str:
        try:
            return self.arch_format.format(self.arch_format.parse(text))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None


@dataclass(frozen=True)
class TabularSearchResult:
    """One budgeted search on a table.

    Attributes:
        best_arch: the arch string of the best architecture by the search metric.
        best_search: its search metric.
        best_report: its report metric (never shown to the strategy).
        num_queries: architectures evaluated.
        spent: simulated cost charged, at most the budget.
        trace: after each query ``(spent so far, best search metric so far, that architecture's report metric)``.
    """

    best_arch: str
    best_search: float
    best_report: float
    num_queries: int
    spent: float
    trace: tuple[tuple[float, float, float], ...]


def run_budgeted_search(
    strategy: SearchStrategy,
    table: TabularBenchmark,
    *,
    budget: float,
    cost_column: str,
    report_metric: str,
    cost_scale: float = 1.0,
) -> TabularSearchResult:
    """Run ``strategy`` on ``table`` until the next query would exceed ``budget`` simulated seconds.

    The strategy is told only its own metric (``strategy.metric``, e.g. validation accuracy). Each query charges
    ``cost_scale * cost_column`` of the asked architecture; a query that would overrun the budget is not made, so
    the run stops within it (the reference code makes that last query and overshoots; the difference is one query).

    Args:
        strategy: any ask/tell strategy over the table's choices.
        table: the benchmark.
        budget: simulated seconds available.
        cost_column: the column charged per query (e.g. a training time).
        report_metric: the column reported for the best-so-far architecture (e.g. test accuracy).
        cost_scale: multiplies the cost column (e.g. ``12 / 200`` to charge a 12-epoch run from a 200-epoch time).

    Raises:
        ValueError: a missing column (listing the table's columns), a non-positive scale, a budget smaller than
            the cheapest query in the table, or a first proposal that does not fit the budget.

    Example:
        >>> import itertools
        >>> from lightning_nas.search import RandomSearch
        >>> from lightning_nas.spaces import NasBench201Format
        >>> fmt = NasBench201Format(ops=("none", "nor_conv_3x3"))  # 2**6 cells; accuracy: how many convs
        >>> names = [c.name for c in fmt.choices()]
        >>> rows = [{"arch": fmt.format(dict(zip(names, ops))), "val": ops.count("nor_conv_3x3"), "time": 10.0}
        ...         for ops in itertools.product(fmt.ops, repeat=6)]
        >>> table = TabularBenchmark(rows, fmt)
        >>> result = run_budgeted_search(RandomSearch(table.choices(), metric="val", seed=0), table,
        ...                              budget=35.0, cost_column="time", report_metric="val")
        >>> result.num_queries, result.spent
        (3, 30.0)
    """
    if cost_scale <= 0 or not math.isfinite(cost_scale):
        raise ValueError(f"cost_scale must be a positive number, got {cost_scale}")
    costs = table.column(cost_column)
    table.column(strategy.metric)
    table.column(report_metric)
    cheapest = cost_scale * min(costs)
    if budget < cheapest:
        raise ValueError(
            f"budget {budget:g} is smaller than the cheapest query in table {table.source} "
            f"({cheapest:g} = {cost_scale:g} x min {cost_column}): no architecture can be evaluated"
        )
    spent, trace = 0.0, []
    while True:
        arch = strategy.ask()
        cost = cost_scale * table.value(arch, cost_column)
        if spent + cost > budget:
            break
        spent += cost
        strategy.tell(arch, {strategy.metric: table.value(arch, strategy.metric)})
        best = strategy.best()
        trace.append((spent, best.metrics[strategy.metric], table.value(best.arch, report_metric)))
    if not trace:
        raise ValueError(
            f"the first proposed architecture costs {cost:g}, more than the budget {budget:g}; raise the budget"
        )
    best = strategy.best()
    return TabularSearchResult(
        best_arch=table.arch_format.format(best.arch),
        best_search=best.metrics[strategy.metric],
        best_report=table.value(best.arch, report_metric),
        num_queries=len(trace),
        spent=spent,
        trace=tuple(trace),
    )


def _numbers(values: Sequence[Any]) -> list[float] | None:
    """The values as floats, or ``None`` if any is missing or not a number."""
    numbers = []
    for value in values:
        if isinstance(value, bool) or value is None:
            return None
        try:
            numbers.append(float(value))
        except (TypeError, ValueError):
            return None
    return numbers


def _json_records(file: Path) -> list[dict[str, Any]]:
    payload = read_json(file, "table file")
    if isinstance(payload, dict) and all(isinstance(v, list) for v in payload.values()):
        lengths = {len(v) for v in payload.values()}
        if len(lengths) != 1:
            raise ValueError(f"table file {str(file)!r}: its columns have different lengths {sorted(lengths)}")
        return [dict(zip(payload, row)) for row in zip(*payload.values())]
    if isinstance(payload, list) and all(isinstance(row, dict) for row in payload):
        return payload
    raise ValueError(f"table file {str(file)!r} must hold a list of row objects or an object of column lists")
