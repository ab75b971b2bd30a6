"""Per-unit thresholds T_u: the top-q quantile of a unit's activations over the whole probe, streamed in batches.

    estimator = ThresholdEstimator(units=512, quantile=0.005, device=device, expected=values_per_unit)
    for batch in batches: estimator.add(values)        # values: (units, n) for this batch
    thresholds = estimator.thresholds()               # (units,)

T_u is exactly torch.quantile(values_u, 1 - q) (linear interpolation) while the values it depends on fit
`exact_limit`. With `expected` (the values per unit of the whole stream) known, that quantile reads only the top
`keep` values of each unit (about q * expected), so the estimator keeps just those: a running top-`keep` per unit,
and values at or below the current `floor` (the keep-th largest so far) can be left out by the caller (add), who
may then also give the few values left unit by unit (add_pairs).
Beyond the limit, a per-unit histogram of `bins` bins whose range grows by doubling (merging bin pairs, so counts
stay exact), with T_u interpolated inside the bin where the top-q count is crossed. The published tools use
streaming sketches with ~0.1% rank error; the histogram keeps the fraction above T_u within 1% (relative) of q
unless one bin holds more than a hundredth of the top-q values (the tests check the fraction). Exact thresholds
depend only on the values; the histogram's also on the order in which they come, which the engine keeps the same
with and without the activation cache.
"""

from __future__ import annotations

import math

import torch

# torch.quantile refuses inputs above 2**24 elements: exact quantiles are taken in unit chunks under that.
_QUANTILE_MAX = 2**24


class ThresholdEstimator:
    def __init__(self, units: int, quantile: float, device: torch.device | str = "cpu",
                 exact_limit: int = 2**26, bins: int = 8192, expected: int | None = None):
        self.units, self.quantile, self.device = units, quantile, torch.device(device)
        self.exact_limit, self.bins = exact_limit, bins
        self.expected = expected  # values per unit in the whole stream, when known: lets the estimator skip work
        self.count = 0  # values per unit so far
        # Exact modes: every value (expected unknown), or each unit's top `keep` values (_top plus _pending).
        self.keep = _values_read_by_quantile(quantile, expected) if expected is not None else None
        self._buffer: list[torch.Tensor] | None = [] if self.keep is None else None
        self._top: torch.Tensor | None = None
        self._pending: list[torch.Tensor] = []  # (units, n) values not yet in _top
        self._pending_width = 0
        self._pending_pairs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (unit, value) pairs not yet in _top
        self._pending_pair_count = 0
        self._counts: torch.Tensor | None = None  # histogram mode: (units, bins) int64
        self._low: torch.Tensor | None = None  # (units,) lower edge of bin 0
        self._width: torch.Tensor | None = None  # (units,) bin width
        self._pairs_since_floor = 0  # histogram: pairs counted since the floor last rose
        # Values at or below _floor can no longer change T_u: they may be left out.
        self._floor = torch.full((units,), -torch.inf, device=self.device)
        if self.keep is not None and 2 * units * self.keep <= exact_limit:  # the top values and as many pending
            self._top = torch.full((units, 0), -torch.inf, device=self.device)

    @property
    def exact(self) -> bool:
        return self._buffer is not None or self._top is not None

    @property
    def floor(self) -> torch.Tensor:
        """(units,): a unit's values at or below its floor no longer matter (add may leave them out); -inf
        while every value of the unit is still needed."""
        return self._floor

    def add(self, values: torch.Tensor, count: int | None = None) -> None:
        """Add a batch: (units, n) values of each unit. With `expected` known, values at or below `floor` may be
        left out (given as -inf, or not at all): `count` says how many values each unit had in the batch."""
        values = values.to(self.device, torch.float32)
        self.count += values.shape[1] if count is None else count
        if self._buffer is not None:
            if count is not None and count != values.shape[1]:
                raise RuntimeError("values can be left out only when `expected` is known")
            self._buffer.append(values)  # fresh tensors from the engine: no copy needed
            if self.count * self.units > self.exact_limit:
                self._start_histogram(torch.cat(self._buffer, dim=1))
        elif self._top is not None:
            self._add_to_top(values)
        elif self._counts is None:
            self._start_histogram(values)
        else:
            self._histogram(values)

    def add_pairs(self, unit: torch.Tensor, values: torch.Tensor, count: int = 0) -> None:
        """Add values unit by unit: values[k] (N,) is a value of unit[k]. Only with `expected` known, and for the
        values above `floor` (those at or below it are left out): `count` says how many values each unit had in
        the batch (0 for more values of a batch already counted)."""
        if self.keep is None:
            raise RuntimeError("values can be given unit by unit only when `expected` is known")
        unit, values = unit.to(self.device), values.to(self.device, torch.float32)
        if self._top is not None:
            self.count += count
            if len(unit) == 0:
                return
            if self._pending_pairs and bool(unit[0] < self._pending_pairs[-1][0][-1]):
                self._add_to_top(self._pairs_as_rows())  # the pairs so far ran in ascending units: one block
            self._pending_pairs.append((unit, values))
            self._pending_pair_count += len(unit)
            if 4 * self._pending_pair_count >= self.keep * self.units:
                self._compact()
        elif self._counts is not None:
            self.count += count
            above = values > self._floor[unit]
            self._count_pairs(unit[above], values[above])
            self._pairs_since_floor += len(unit)
            if 4 * self._pairs_since_floor >= self.keep * self.units:  # as often as the running top compacts
                self._raise_floor_from_counts()
        else:
            self.add(_by_unit(unit, values, self.units), count=count)

    def thresholds(self) -> torch.Tensor:
        if self._buffer is not None:
            return _quantile(torch.cat(self._buffer, dim=1), self.quantile)
        if self._top is not None:
            return self._from_top()
        return self._from_histogram()

    # Exact: a running top `keep` of each unit.

    def _add_to_top(self, values: torch.Tensor) -> None:
        self._pending.append(values)
        self._pending_width += values.shape[1]
        if 4 * self._pending_width >= self.keep:  # often enough for the floor to keep up
            self._compact()

    def _pairs_as_rows(self) -> torch.Tensor:
        """The pending pairs as (units, n) rows, -inf where a unit has fewer; no pairs pending after."""
        if not self._pending_pairs:
            return self._floor.new_empty(self.units, 0)
        units, values = zip(*self._pending_pairs)
        self._pending_pairs, self._pending_pair_count = [], 0
        return _by_unit(torch.cat(units), torch.cat(values), self.units)

    def _compact(self) -> None:
        values = torch.cat([self._top, *self._pending, self._pairs_as_rows()], dim=1)
        self._pending, self._pending_width = [], 0
        if values.shape[1] > self.keep:
            values = values.topk(self.keep, dim=1, sorted=False).values
        self._top = values
        if values.shape[1] == self.keep:  # the keep-th largest so far: a value at or below it changes nothing
            self._floor = torch.maximum(self._floor, values.min(dim=1).values)

    def _from_top(self) -> torch.Tensor:
        """torch.quantile's result, from the top values alone: the same rank, weight and lerp."""
        if self.count != self.expected:
            raise RuntimeError(f"the stream had {self.count} values per unit, not the {self.expected} expected")
        self._compact()
        position = _quantile_position(self.quantile, self.count)
        below, above = math.floor(position), math.ceil(position)
        # Ascending ranks `below` and `below + 1` of n values are the keep-th and (keep-1)-th largest (keep is
        # n - below): the smallest two values kept.
        smallest = self._top.topk(min(2, self.keep), dim=1, largest=False).values
        low = smallest[:, 0]
        high = smallest[:, 1] if above > below else low
        return torch.lerp(low, high, torch.tensor(position - below, dtype=torch.float32, device=self.device))

    # Histogram mode.

    def _start_histogram(self, values: torch.Tensor) -> None:
        """values: (units, n), -inf where a unit has fewer."""
        self._buffer = None
        finite = torch.isfinite(values)
        low = torch.where(finite, values, torch.inf).min(dim=1).values
        high = torch.where(finite, values, -torch.inf).max(dim=1).values
        low, high = torch.where(torch.isfinite(low), low, 0), torch.where(torch.isfinite(high), high, 0)
        span = torch.where(high > low, high - low, torch.ones_like(high))
        self._low = low
        self._width = span * (1 + 1e-6) / self.bins  # the maximum falls inside the last bin
        self._counts = torch.zeros(self.units, self.bins, dtype=torch.int64, device=self.device)
        if self.keep is not None and values.shape[1] >= self.keep:
            # The keep-th largest value so far already bounds T_u from below: values under the edge of its bin
            # no longer matter (that bin, where T_u may fall, is still counted whole).
            rows = max(1, 2**26 // values.shape[1])
            kth = torch.cat([values[start:start + rows].topk(self.keep, dim=1).values[:, -1]
                             for start in range(0, self.units, rows)])
            self._floor = _just_below(self._bin_edge_below(kth))
        self._histogram(values)

    def _bin_edge_below(self, values: torch.Tensor) -> torch.Tensor:
        edge = self._low + self._width * ((values - self._low) / self._width).floor()
        return torch.where(torch.isfinite(values), torch.minimum(edge, values), values)

    def _histogram(self, values: torch.Tensor) -> None:
        """Count (units, n) values, those above the floor only."""
        # Bound the temporaries: a chunk of units at a time (larger on a GPU, where each chunk costs a host sync).
        budget = 2**28 if self.device.type == "cuda" else 2**25
        step = max(1, budget // max(1, values.shape[1]))
        for start in range(0, self.units, step):
            chunk = values[start:start + step]
            row, column = (chunk > self._floor[start:start + step][:, None]).nonzero(as_tuple=True)
            self._count_pairs(row + start, chunk[row, column])
        self._raise_floor_from_counts()

    def _count_pairs(self, unit: torch.Tensor, values: torch.Tensor) -> None:
        """Count values[k] in unit[k]'s histogram (non-finite values are left out)."""
        finite = torch.isfinite(values)
        values, unit = values[finite], unit[finite]
        if values.numel() == 0:
            return
        infinity = torch.full((self.units,), torch.inf, device=self.device)
        low = infinity.scatter_reduce(0, unit, values, "amin")
        high = (-infinity).scatter_reduce(0, unit, values, "amax")
        present = torch.isfinite(high)
        self._grow(torch.where(present, low, self._low), torch.where(present, high, self._low))
        index = ((values - self._low[unit]) / self._width[unit]).to(torch.int64).clamp_(0, self.bins - 1)
        index += unit * self.bins
        self._counts.view(-1).index_add_(0, index, torch.ones_like(index))

    def _raise_floor_from_counts(self) -> None:
        """Once the values so far put `keep` of them above a bin edge, T_u cannot fall below that edge."""
        self._pairs_since_floor = 0
        if self.keep is None:
            return
        from_top = self._counts.flip(1).cumsum(1)
        reached = from_top[:, -1] >= self.keep
        bins_above = (from_top < self.keep).sum(dim=1).clamp(max=self.bins - 1)
        edge = self._low + self._width * (self.bins - 1 - bins_above)
        self._floor = torch.where(reached, torch.maximum(self._floor, _just_below(edge)), self._floor)

    def _grow(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Double the range of every unit whose new values fall outside it, until they fit."""
        half = self.bins // 2
        while True:
            top = self._low + self._width * self.bins
            up = high >= top
            down = (low < self._low) & ~up  # one direction per round
            if not (up.any() or down.any()):
                return
            merged = self._counts.view(self.units, half, 2).sum(dim=2)
            grown = torch.zeros_like(self._counts)
            grown[:, :half] = merged
            shifted = torch.zeros_like(self._counts)
            shifted[:, half:] = merged
            self._counts = torch.where(up[:, None], grown, torch.where(down[:, None], shifted, self._counts))
            self._low = torch.where(down, self._low - self._width * self.bins, self._low)
            self._width = torch.where(up | down, self._width * 2, self._width)

    def _from_histogram(self) -> torch.Tensor:
        wanted = self.quantile * self.count  # values above T_u
        from_top = self._counts.flip(1).cumsum(1)  # values in the top j+1 bins
        crossing = (from_top < wanted).sum(dim=1).clamp(max=self.bins - 1)  # bins from the top wholly above T_u
        above = torch.where(crossing > 0, from_top.gather(1, (crossing - 1).clamp(min=0)[:, None])[:, 0],
                            torch.zeros_like(crossing))
        bin_index = self.bins - 1 - crossing
        in_bin = self._counts.gather(1, bin_index[:, None])[:, 0].clamp(min=1)
        fraction = ((wanted - above) / in_bin).clamp(0, 1)
        bin_top = self._low + self._width * (bin_index + 1)
        return bin_top - fraction * self._width


def _quantile_position(quantile: float, count: int) -> float:
    """Where torch.quantile(values, 1 - quantile) of float32 values interpolates, in ascending ranks: the level
    rounded to float32, times count - 1 in double precision (found to reproduce its results bit for bit)."""
    return float(torch.tensor(1 - quantile, dtype=torch.float32)) * (count - 1)


def _values_read_by_quantile(quantile: float, count: int) -> int:
    """How many of the largest of `count` values torch.quantile reads (ascending ranks floor(p) and ceil(p))."""
    return max(1, count - math.floor(_quantile_position(quantile, count)))


def _quantile(values: torch.Tensor, quantile: float) -> torch.Tensor:
    rows = max(1, _QUANTILE_MAX // max(1, values.shape[1]))
    return torch.cat([torch.quantile(values[start:start + rows], 1 - quantile, dim=1)
                      for start in range(0, values.shape[0], rows)])


def _by_unit(unit: torch.Tensor, values: torch.Tensor, units: int) -> torch.Tensor:
    """(units, n) values from (unit, value) pairs: each unit's values in a row, -inf where it has fewer. Pairs in
    ascending units (as nonzero gives them) need no sorting."""
    if len(unit) > 1 and not bool((unit[1:] >= unit[:-1]).all()):
        order = unit.argsort(stable=True)
        unit, values = unit[order], values[order]
    counts = torch.bincount(unit, minlength=units)
    slot = torch.arange(len(unit), device=unit.device) - (counts.cumsum(0) - counts)[unit]
    rows = values.new_full((units, int(counts.max()) if len(unit) else 0), -math.inf)
    rows[unit, slot] = values
    return rows


def _just_below(values: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(values, torch.full_like(values, -math.inf))

