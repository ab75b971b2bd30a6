"""Per-unit thresholds T_u: the top-q quantile of a unit's activations over the whole probe, streamed in batches.

    estimator = ThresholdEstimator(units=512, quantile=0.005, device=device, expected=values_per_unit)
    for batch in batches: estimator.add(values)        # values: (units, n) for this batch
    thresholds = estimator.thresholds()               # (units,)

Three algorithms, one class each, with one interface (add, add_pairs, thresholds, exact, floor, keep):

- ExactBuffer: every value, then torch.quantile (when `expected`, the values per unit of the whole stream, is not
  known); exact while the values fit `exact_limit`.
- RunningTop: with `expected` known, torch.quantile(values_u, 1 - q) reads only the top `keep` values of each unit
  (about q * expected), so only those are kept; exact, bit for bit, while twice them fit `exact_limit`.
- Histogram: beyond the limit, a per-unit histogram whose range grows by doubling; the share above T_u within 1%
  (relative) of q.

`choose` picks one from the sizes; ThresholdEstimator, what the engine holds, asks it and carries on with a
Histogram when an ExactBuffer outgrows the limit. With `expected` known, values at or below the current `floor`
(a lower bound of T_u) can be left out by the caller (add), who may then also give the few values left unit by
unit (add_pairs). The published tools use streaming sketches with ~0.1% rank error. Exact thresholds depend only
on the values; the histogram's also on the order in which they come, which the engine keeps the same with and
without the activation cache.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from lce.config import DeviceBudget
from lce.vocabulary import HISTOGRAM_BINS

# torch.quantile refuses inputs above 2**24 elements: exact quantiles are taken in unit chunks under that.
_QUANTILE_MAX = 2**24


class ThresholdEstimator:
    """T_u of `units` units from a stream of (units, n) batches: the algorithm `choose` picks for the sizes, and a
    Histogram in place of an ExactBuffer once its values outgrow `exact_limit` (default: the device's, see
    lce.config.DeviceBudget). `exact` says whether the thresholds are torch.quantile's bit for bit."""

    def __init__(self, units: int, quantile: float, device: torch.device | str = "cpu",
                 exact_limit: int | None = None, bins: int = HISTOGRAM_BINS, expected: int | None = None,
                 histogram_chunk: int | None = None):
        self.exact_limit, self.bins = exact_limit or DeviceBudget.for_device(device).exact_limit, bins
        self.histogram_chunk = histogram_chunk  # values a Histogram counts at once (None: the device's)
        self.algorithm = choose(units, quantile, device, self.exact_limit, bins, expected, histogram_chunk)

    @property
    def exact(self) -> bool:
        return self.algorithm.exact

    @property
    def floor(self) -> torch.Tensor:
        """(units,): a unit's values at or below its floor no longer matter (add may leave them out); -inf
        while every value of the unit is still needed."""
        return self.algorithm.floor

    @property
    def keep(self) -> int | None:
        """How many of each unit's largest values the quantile reads (None while `expected` is unknown)."""
        return self.algorithm.keep

    @property
    def count(self) -> int:
        """Values per unit so far."""
        return self.algorithm.count

    def add(self, values: torch.Tensor, count: int | None = None) -> None:
        """Add a batch: (units, n) values of each unit. With `expected` known, values at or below `floor` may be
        left out (given as -inf, or not at all): `count` says how many values each unit had in the batch."""
        algorithm = self.algorithm
        algorithm.add(values, count)
        if isinstance(algorithm, ExactBuffer) and algorithm.count * algorithm.units > self.exact_limit:
            self.algorithm = Histogram.of_buffer(algorithm, self.bins, self.histogram_chunk)

    def add_pairs(self, unit: torch.Tensor, values: torch.Tensor, count: int = 0, ascending: bool = False) -> None:
        """Add values unit by unit: values[k] (N,) is a value of unit[k]. Only with `expected` known, and for the
        values above `floor` (those at or below it are left out, or given as -inf): `count` says how many values
        each unit had in the batch (0 for more values of a batch already counted). `ascending`: the pairs come in
        ascending units (as nonzero gives them), which spares a running top a sort."""
        self.algorithm.add_pairs(unit, values, count, ascending)

    def thresholds(self) -> torch.Tensor:
        """(units,) T_u."""
        return self.algorithm.thresholds()


def choose(units: int, quantile: float, device: torch.device | str, exact_limit: int, bins: int = HISTOGRAM_BINS,
           expected: int | None = None, histogram_chunk: int | None = None) -> ExactBuffer | RunningTop | Histogram:
    """The algorithm for these sizes: without `expected`, an ExactBuffer (ThresholdEstimator swaps it for a
    Histogram once `exact_limit` values are exceeded); with it, a RunningTop while the top values and as many
    pending fit `exact_limit`, else a Histogram."""
    if expected is None:
        return ExactBuffer(units, quantile, device)
    keep = values_read_by_quantile(quantile, expected)
    if 2 * units * keep <= exact_limit:
        return RunningTop(units, quantile, device, expected)
    return Histogram(units, quantile, device, bins, keep, histogram_chunk)


class _Algorithm:
    """What the three algorithms share: the sizes, the values per unit so far (`count`) and the floor."""

    exact = True

    def __init__(self, units: int, quantile: float, device: torch.device | str, keep: int | None):
        self.units, self.quantile, self.device = units, quantile, torch.device(device)
        self.keep = keep  # each unit's largest values the quantile reads; None while the stream's length is unknown
        self.count = 0  # values per unit so far
        # Values at or below the floor can no longer change T_u: they may be left out.
        self.floor = torch.full((units,), -torch.inf, device=self.device)

    def add(self, values: torch.Tensor, count: int | None = None) -> None:
        values = values.to(self.device, torch.float32)
        self.count += values.shape[1] if count is None else count
        self._add(values, count)

    def _add(self, values: torch.Tensor, count: int | None) -> None:
        raise NotImplementedError

    def add_pairs(self, unit: torch.Tensor, values: torch.Tensor, count: int = 0, ascending: bool = False) -> None:
        raise RuntimeError("values can be given unit by unit only when `expected` is known")

    def thresholds(self) -> torch.Tensor:
        raise NotImplementedError


class ExactBuffer(_Algorithm):
    """Every value, kept; T_u is torch.quantile's, bit for bit. Chosen when the stream's length is not known (so
    no value can be left out); ThresholdEstimator replaces it by a Histogram once the values outgrow the limit."""

    def __init__(self, units: int, quantile: float, device: torch.device | str = "cpu"):
        super().__init__(units, quantile, device, keep=None)
        self.buffer: list[torch.Tensor] = []

    def _add(self, values: torch.Tensor, count: int | None) -> None:
        if count is not None and count != values.shape[1]:
            raise RuntimeError("values can be left out only when `expected` is known")
        self.buffer.append(values)  # fresh tensors from the engine: no copy needed

    def thresholds(self) -> torch.Tensor:
        return _quantile(torch.cat(self.buffer, dim=1), self.quantile)


class RunningTop(_Algorithm):
    """A running top `keep` of each unit's values, `keep` being how many of the largest torch.quantile reads of
    `expected` values (ranks floor(p) and ceil(p)): T_u is torch.quantile's, bit for bit. Chosen when the stream's
    length is known and twice `keep` values per unit (the top and as many pending) fit the exact limit. Values at
    or below the floor (the keep-th largest so far) change nothing, so the caller may leave them out."""

    def __init__(self, units: int, quantile: float, device: torch.device | str, expected: int):
        super().__init__(units, quantile, device, keep=values_read_by_quantile(quantile, expected))
        self.expected = expected
        self.top = torch.full((units, 0), -torch.inf, device=self.device)
        self._pending: list[torch.Tensor] = []  # (units, n) values not yet in top
        self._pending_width = 0
        self._pending_pairs: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # (unit, value, ascending) blocks
        self._pending_pair_count = 0

    def _add(self, values: torch.Tensor, count: int | None) -> None:
        self._pending.append(values)
        self._pending_width += values.shape[1]
        if 4 * self._pending_width >= self.keep:  # often enough for the floor to keep up
            self._compact()

    def add_pairs(self, unit: torch.Tensor, values: torch.Tensor, count: int = 0, ascending: bool = False) -> None:
        unit, values = unit.to(self.device), values.to(self.device, torch.float32)
        self.count += count
        if len(unit) == 0:
            return
        self._pending_pairs.append((unit, values, ascending))  # -inf values among them are left out (_by_unit)
        self._pending_pair_count += len(unit)
        # The pairs count their left-out slots too (the host does not know how many): a quarter of the rows'
        # pace would compact too often.
        if self._pending_pair_count >= self.keep * self.units:
            self._compact()

    def _pairs_as_rows(self) -> torch.Tensor:
        """The pending pairs as (units, n) rows, -inf where a unit has fewer; no pairs pending after. One host
        read (the widest row), once per compaction."""
        if not self._pending_pairs:
            return self.floor.new_empty(self.units, 0)
        blocks, self._pending_pairs, self._pending_pair_count = self._pending_pairs, [], 0
        return _by_unit(blocks, self.units)

    def _compact(self) -> None:
        values = torch.cat([self.top, *self._pending, self._pairs_as_rows()], dim=1)
        self._pending, self._pending_width = [], 0
        if values.shape[1] > self.keep:
            values = values.topk(self.keep, dim=1, sorted=False).values
        self.top = values
        if values.shape[1] == self.keep:  # the keep-th largest so far: a value at or below it changes nothing
            self.floor = torch.maximum(self.floor, values.min(dim=1).values)

    def thresholds(self) -> torch.Tensor:
        """torch.quantile's result, from the top values alone: the same rank, weight and lerp."""
        if self.count != self.expected:
            raise RuntimeError(f"the stream had {self.count} values per unit, not the {self.expected} expected")
        self._compact()
        position = _quantile_position(self.quantile, self.count)
        below, above = math.floor(position), math.ceil(position)
        # Ascending ranks `below` and `below + 1` of n values are the keep-th and (keep-1)-th largest (keep is
        # n - below): the smallest two values kept.
        smallest = self.top.topk(min(2, self.keep), dim=1, largest=False).values
        low = smallest[:, 0]
        high = smallest[:, 1] if above > below else low
        return torch.lerp(low, high, torch.tensor(position - below, dtype=torch.float32, device=self.device))


class Histogram(_Algorithm):
    """A per-unit histogram of `bins` bins whose range grows by doubling (merging bin pairs, so counts stay exact),
    with T_u interpolated inside the bin where the top-q count is crossed. Chosen when the exact algorithms' values
    would not fit the exact limit. It keeps the share above T_u within 1% (relative) of q unless one bin holds more
    than a hundredth of the top-q values (the tests check the share). With `keep` known, a floor (just under the
    edge of the bin where the keep-th largest value so far falls) lets the caller leave out the values under it."""

    exact = False

    def __init__(self, units: int, quantile: float, device: torch.device | str = "cpu", bins: int = HISTOGRAM_BINS,
                 keep: int | None = None, chunk: int | None = None):
        super().__init__(units, quantile, device, keep)
        self.bins = bins
        self.counts: torch.Tensor | None = None  # (units, bins) int64, from the first values on
        self.low: torch.Tensor | None = None  # (units,) lower edge of bin 0
        self.width: torch.Tensor | None = None  # (units,) bin width
        self._pairs_since_floor = 0  # pairs counted since the floor last rose
        # Bound the temporaries (about 40 bytes a value): a chunk of units at a time (lce.dissect.memory sizes it to
        # the device; no chunk makes the host wait).
        self._chunk_values = chunk or DeviceBudget.for_device(self.device).histogram_chunk
        self._bin_index = torch.arange(bins, device=self.device)[None, :]  # (1, bins), for _grow
        # The CPU counts only the values kept, a GPU every value with a weight (lce.config.DeviceBudget.compact).
        self._compact = DeviceBudget.for_device(self.device).compact

    @classmethod
    def of_buffer(cls, buffer: ExactBuffer, bins: int = HISTOGRAM_BINS, chunk: int | None = None) -> Histogram:
        """An ExactBuffer's values so far, in a histogram."""
        histogram = cls(buffer.units, buffer.quantile, buffer.device, bins, chunk=chunk)
        histogram.count = buffer.count
        histogram._start(torch.cat(buffer.buffer, dim=1))
        return histogram

    def _add(self, values: torch.Tensor, count: int | None) -> None:
        if self.counts is None:
            self._start(values)
        else:
            self._histogram(values)

    def add_pairs(self, unit: torch.Tensor, values: torch.Tensor, count: int = 0, ascending: bool = False) -> None:
        if self.keep is None:  # an ExactBuffer's values: the stream's length is unknown
            super().add_pairs(unit, values, count)  # raises
        unit, values = unit.to(self.device), values.to(self.device, torch.float32)
        if self.counts is None:
            self.add(_by_unit([(unit, values, ascending)], self.units), count=count)
            return
        self.count += count
        counted = (values > self.floor[unit]) & torch.isfinite(values)
        infinity = torch.full((self.units,), torch.inf, device=self.device)
        low = infinity.scatter_reduce(0, unit, torch.where(counted, values, torch.inf), "amin")
        high = (-infinity).scatter_reduce(0, unit, torch.where(counted, values, -torch.inf), "amax")
        self._count(unit, values, counted, low, high)
        self._pairs_since_floor += len(unit)
        if 4 * self._pairs_since_floor >= self.keep * self.units:  # as often as the running top compacts
            self._raise_floor_from_counts()

    def _start(self, values: torch.Tensor) -> None:
        """The range from the first values: (units, n), -inf where a unit has fewer."""
        finite = torch.isfinite(values)
        low = torch.where(finite, values, torch.inf).min(dim=1).values
        high = torch.where(finite, values, -torch.inf).max(dim=1).values
        low, high = torch.where(torch.isfinite(low), low, 0), torch.where(torch.isfinite(high), high, 0)
        span = torch.where(high > low, high - low, torch.ones_like(high))
        self.low = low
        self.width = span * (1 + 1e-6) / self.bins  # the maximum falls inside the last bin
        self.counts = torch.zeros(self.units, self.bins, dtype=torch.int64, device=self.device)
        if self.keep is not None and values.shape[1] >= self.keep:
            # The keep-th largest value so far already bounds T_u from below: values under the edge of its bin
            # no longer matter (that bin, where T_u may fall, is still counted whole).
            rows = max(1, 2**26 // values.shape[1])
            kth = torch.cat([values[start:start + rows].topk(self.keep, dim=1).values[:, -1]
                             for start in range(0, self.units, rows)])
            self.floor = _just_below(self._bin_edge_below(kth))
        self._histogram(values)

    def _bin_edge_below(self, values: torch.Tensor) -> torch.Tensor:
        edge = self.low + self.width * ((values - self.low) / self.width).floor()
        return torch.where(torch.isfinite(values), torch.minimum(edge, values), values)

    def _histogram(self, values: torch.Tensor) -> None:
        """Count (units, n) values, those above the floor only, a chunk of units at a time."""
        step = max(1, self._chunk_values // max(1, values.shape[1]))
        for start in range(0, self.units, step):
            chunk = values[start:start + step]
            counted = (chunk > self.floor[start:start + step][:, None]) & torch.isfinite(chunk)
            low = torch.full((self.units,), torch.inf, device=self.device)
            high = torch.full((self.units,), -torch.inf, device=self.device)
            if chunk.shape[1]:
                low[start:start + step] = torch.where(counted, chunk, torch.inf).amin(dim=1)
                high[start:start + step] = torch.where(counted, chunk, -torch.inf).amax(dim=1)
            unit = torch.arange(start, start + len(chunk), device=self.device)[:, None]
            self._count(unit, chunk, counted, low, high)
        self._raise_floor_from_counts()

    def _count(self, unit: torch.Tensor, values: torch.Tensor, counted: torch.Tensor, low: torch.Tensor,
               high: torch.Tensor) -> None:
        """Count values in their unit's histogram where `counted` (finite values only): unit broadcasts against
        values ((N,) pairs, or (rows, 1) for rows of units); low and high (units,) are each unit's smallest and
        largest counted value (+-inf where none). On a device every value takes part, those not counted with weight
        0, so that no size depends on the data (no host read); the CPU keeps the counted ones first (the same
        counts, fewer values)."""
        present = torch.isfinite(high)
        self._grow(torch.where(present, low, self.low), torch.where(present, high, self.low))
        if self._compact:
            unit, values = unit.expand_as(values)[counted], values[counted]
            index = ((values - self.low[unit]) / self.width[unit]).to(torch.int64).clamp_(0, self.bins - 1)
            self.counts.view(-1).index_add_(0, index + unit * self.bins, torch.ones_like(index))
            return
        bins = ((values - self.low[unit]) / self.width[unit]).nan_to_num_(0.0, 0.0, 0.0)
        index = bins.to(torch.int64).clamp_(0, self.bins - 1)
        # A value left out goes, with weight 0, to a bin of its position rather than of its value: the left out
        # are most values and often equal (ReLU zeros); one bin for all would serialise the device's atomic adds.
        spread = torch.arange(values.shape[-1], device=self.device) % self.bins
        index = torch.where(counted, index, spread) + unit * self.bins
        self.counts.view(-1).index_add_(0, index.reshape(-1), counted.to(torch.int64).reshape(-1))

    def _raise_floor_from_counts(self) -> None:
        """Once the values so far put `keep` of them above a bin edge, T_u cannot fall below that edge."""
        self._pairs_since_floor = 0
        if self.keep is None:
            return
        from_top = self.counts.flip(1).cumsum(1)
        reached = from_top[:, -1] >= self.keep
        bins_above = (from_top < self.keep).sum(dim=1).clamp(max=self.bins - 1)
        edge = self.low + self.width * (self.bins - 1 - bins_above)
        self.floor = torch.where(reached, torch.maximum(self.floor, _just_below(edge)), self.floor)

    def _grow(self, low: torch.Tensor, high: torch.Tensor) -> None:
        """Double the range of every unit whose new values fall outside it, until they fit: first upwards (the low
        edge stays, the width doubles k_up times) until `high` is under the top, then downwards (the top stays)
        until `low` is in. Each unit's doublings are found on the device and its counts moved with one scatter:
        after k_up then k_down doublings old bin j is bin (j >> (k_up + k_down)) + bins - (bins >> k_down)
        (pairs of bins merged into the lower half, then into the upper half), so counts stay exact."""
        bins, start, width = self.bins, self.low, self.width
        if self._compact and not bool(((high >= start + width * bins) | (low < start)).any()):
            return  # the CPU reads whether any unit grows (free there) and spares the scatter; a GPU always runs it
        k_up = _fewest_doublings(lambda k: start + _doubled(width, k) * bins > high,
                                 (high - start) / (width * bins))
        width = _doubled(width, k_up)
        top = start + width * bins
        # Growing down keeps the top: after k doublings the low edge is top - width * 2**k * bins.
        k_down = _fewest_doublings(
            lambda k: torch.where(k == 0, start <= low, top - _doubled(width, k) * bins <= low),
            (top - low) / (width * bins))
        offset = (bins - (bins >> k_down.clamp(max=62))).clamp(max=bins - 1)
        index = (self._bin_index >> (k_up + k_down).clamp(max=62)[:, None]) + offset[:, None]
        self.counts = torch.zeros_like(self.counts).scatter_add_(1, index, self.counts)
        width = _doubled(width, k_down)
        self.low = torch.where(k_down > 0, top - width * bins, start)
        self.width = width

    def thresholds(self) -> torch.Tensor:
        """T_u interpolated linearly inside the bin where the count from the top reaches q * count."""
        wanted = self.quantile * self.count  # values above T_u
        from_top = self.counts.flip(1).cumsum(1)  # values in the top j+1 bins
        crossing = (from_top < wanted).sum(dim=1).clamp(max=self.bins - 1)  # bins from the top wholly above T_u
        above = torch.where(crossing > 0, from_top.gather(1, (crossing - 1).clamp(min=0)[:, None])[:, 0],
                            torch.zeros_like(crossing))
        bin_index = self.bins - 1 - crossing
        in_bin = self.counts.gather(1, bin_index[:, None])[:, 0].clamp(min=1)
        fraction = ((wanted - above) / in_bin).clamp(0, 1)
        bin_top = self.low + self.width * (bin_index + 1)
        return bin_top - fraction * self.width


def _quantile_position(quantile: float, count: int) -> float:
    """Where torch.quantile(values, 1 - quantile) of float32 values interpolates, in ascending ranks: the level
    rounded to float32, times count - 1 in double precision (found to reproduce its results bit for bit)."""
    return float(np.float32(1 - quantile)) * (count - 1)  # numpy: a host number, no tensor to read back


def values_read_by_quantile(quantile: float, count: int) -> int:
    """How many of the largest of `count` values torch.quantile reads (ascending ranks floor(p) and ceil(p))."""
    return max(1, count - math.floor(_quantile_position(quantile, count)))


def _quantile(values: torch.Tensor, quantile: float) -> torch.Tensor:
    rows = max(1, _QUANTILE_MAX // max(1, values.shape[1]))
    return torch.cat([torch.quantile(values[start:start + rows], 1 - quantile, dim=1)
                      for start in range(0, values.shape[0], rows)])


def _by_unit(blocks: list[tuple[torch.Tensor, torch.Tensor, bool]], units: int) -> torch.Tensor:
    """(units, n) values from blocks of (unit, value) pairs: each unit's values in a row, in the order given, -inf
    where it has fewer; -inf values (left out) take no slot. A block flagged ascending (in ascending units) needs
    no sort. One host read: the widest row, which sizes the result."""
    ordered = []
    for unit, values, ascending in blocks:
        if not ascending:
            order = unit.argsort(stable=True)
            unit, values = unit[order], values[order]
        ordered.append((unit, values))
    unit, values = (torch.cat(part) for part in zip(*ordered))
    block = torch.cat([torch.full_like(part, number) for number, (part, _) in enumerate(ordered)])
    kept = values > -math.inf
    # Pairs run block by block, ascending units within each: a (block, unit) run's kept pairs start after those of
    # every earlier run, and a unit's slots after its kept pairs of earlier blocks.
    run = torch.where(kept, block * units + unit, len(ordered) * units)  # the left out go to a spare run
    counts = torch.zeros(len(ordered) * units + 1, dtype=torch.int64, device=unit.device)
    counts.index_add_(0, run, torch.ones_like(run))
    run_start = counts.cumsum(0) - counts  # kept pairs before each run
    per_block = counts[:-1].view(len(ordered), units)
    earlier = (per_block.cumsum(0) - per_block).flatten()  # a unit's kept pairs in earlier blocks
    rank = kept.cumsum(0) - 1  # kept pairs before each one
    slot = torch.where(kept, earlier[run.clamp(max=len(earlier) - 1)] + rank - run_start[run], 0)
    width = int(per_block.sum(0).max()) if units else 0
    rows = values.new_full((units + 1, max(width, 1)), -math.inf)
    rows[torch.where(kept, unit, units), slot] = values  # the spare row is never read
    return rows[:units, :width]


def _doubled(width: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """width * 2**k, exact (inf beyond float32's range)."""
    return width * torch.exp2(k.to(width.dtype))


def _fewest_doublings(fits, ratio: torch.Tensor) -> torch.Tensor:
    """(units,) int64: per unit, the fewest doublings k >= 0 for which fits(k) holds (fits is monotone in k), from
    k = ceil(log2(ratio)) corrected by the test itself (log2 in float32 may be one off either way)."""
    k = torch.log2(ratio).ceil().nan_to_num_(0.0, 255.0, 0.0).clamp_(0, 255).to(torch.int64)
    for _ in range(2):
        k = torch.where(fits(k), k, k + 1)
        k = torch.where((k > 0) & fits((k - 1).clamp(min=0)), k - 1, k)
    return k


def _just_below(values: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(values, torch.full_like(values, -math.inf))

