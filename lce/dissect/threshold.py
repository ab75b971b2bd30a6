"""Per-unit thresholds T_u: the top-q quantile of a unit's activations over the whole probe, streamed in batches.

    estimator = ThresholdEstimator(units=512, quantile=0.005, device=device)
    for batch in batches: estimator.add(values)        # values: (units, n) for this batch
    thresholds = estimator.thresholds()               # (units,)

Exact while every value fits `exact_limit` (then T_u is torch.quantile(values_u, 1 - q), linear interpolation);
beyond it, a per-unit histogram of `bins` bins whose range grows by doubling (merging bin pairs, so counts stay
exact), with T_u interpolated inside the bin where the top-q count is crossed. The published tools use streaming
sketches with ~0.1% rank error; the histogram keeps the fraction above T_u within 1% (relative) of q unless one
bin holds more than a hundredth of the top-q values (the tests check the fraction). The result depends only on
the values and their order, so a run with the activation cache gives the same thresholds as one without.
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
        self.expected = expected  # values per unit in the whole stream, when known: lets the histogram skip work
        self.count = 0  # values per unit so far
        self._buffer: list[torch.Tensor] | None = []
        self._counts: torch.Tensor | None = None  # (units, bins) int64
        self._low: torch.Tensor | None = None  # (units,) lower edge of bin 0
        self._width: torch.Tensor | None = None  # (units,) bin width
        # Values below _floor can no longer reach the top q of the whole stream (expected values): the histogram
        # skips them, which is most of them once a fraction of the stream is in.
        self._floor = torch.full((units,), -torch.inf, device=self.device)

    @property
    def exact(self) -> bool:
        return self._buffer is not None

    def add(self, values: torch.Tensor) -> None:
        """Add a batch: (units, n) values of each unit."""
        values = values.to(self.device, torch.float32)
        self.count += values.shape[1]
        if self._buffer is not None:
            self._buffer.append(values)  # fresh tensors from the engine: no copy needed
            # A stream known to outgrow the exact limit goes to the histogram at once.
            total = self.expected if self.expected is not None else self.count
            if max(total, self.count) * self.units > self.exact_limit:
                self._start_histogram()
        else:
            self._add_to_histogram(values)

    def thresholds(self) -> torch.Tensor:
        if self._buffer is not None:
            return self._exact()
        return self._from_histogram()

    def _exact(self) -> torch.Tensor:
        values = torch.cat(self._buffer, dim=1)
        rows = max(1, _QUANTILE_MAX // max(1, values.shape[1]))
        return torch.cat([torch.quantile(values[start:start + rows], 1 - self.quantile, dim=1)
                          for start in range(0, self.units, rows)])

    def _start_histogram(self) -> None:
        values = torch.cat(self._buffer, dim=1)
        self._buffer = None
        low, high = values.min(dim=1).values, values.max(dim=1).values
        span = torch.where(high > low, high - low, torch.ones_like(high))
        self._low = low
        self._width = span * (1 + 1e-6) / self.bins  # the maximum falls inside the last bin
        self._counts = torch.zeros(self.units, self.bins, dtype=torch.int64, device=self.device)
        if self.expected is not None:
            # The k-th largest value so far already bounds T_u from below (k = q * expected values must lie at or
            # above T_u): start skipping below the edge of its bin, so that bin is still counted whole.
            k = math.ceil(self.quantile * self.expected)
            if values.shape[1] >= k:
                rows = max(1, 2**26 // values.shape[1])
                kth = torch.cat([values[start:start + rows].topk(k, dim=1).values[:, -1]
                                 for start in range(0, self.units, rows)])
                self._floor = self._low + self._width * ((kth - self._low) / self._width).floor()
        self._add_to_histogram(values)

    @property
    def floor(self) -> torch.Tensor | None:
        """(units,) values below which a unit's values no longer matter (add_rows may leave them out), or None
        while every value is still needed (exact mode, or too little seen yet)."""
        if self._buffer is not None or self.expected is None or not torch.isfinite(self._floor).all():
            return None
        return self._floor

    def add_rows(self, rows: torch.Tensor, values: torch.Tensor, count: int) -> None:
        """Add some units' values only: values[k] are values of unit rows[k]; `count` is how many values every unit
        had in this batch, those left out too (only values below `floor` may be left out)."""
        if self._buffer is not None:
            raise RuntimeError("add_rows needs histogram mode: use add() until `floor` is known")
        self.count += count
        self._histogram(rows, values.to(self.device, torch.float32))

    def _add_to_histogram(self, values: torch.Tensor) -> None:
        self._histogram(torch.arange(self.units, device=self.device), values)

    def _histogram(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        if rows.numel() == 0:
            return
        infinity = torch.full((self.units,), torch.inf, device=self.device)
        low = infinity.scatter_reduce(0, rows, values.min(dim=1).values, "amin")
        high = (-infinity).scatter_reduce(0, rows, values.max(dim=1).values, "amax")
        present = torch.isfinite(high)
        self._grow(torch.where(present, torch.maximum(low, self._floor), self._low),
                   torch.where(present, high, self._low))
        # Bound the temporaries: a chunk of rows at a time (larger on a GPU, where each chunk costs a host sync).
        budget = 2**28 if self.device.type == "cuda" else 2**25
        step = max(1, budget // max(1, values.shape[1]))
        flat = self._counts.view(-1)
        for start in range(0, len(rows), step):
            chunk = values[start:start + step]
            row, column = (chunk >= self._floor[rows[start:start + step]][:, None]).nonzero(as_tuple=True)
            kept, unit = chunk[row, column], rows[start:start + step][row]
            index = ((kept - self._low[unit]) / self._width[unit]).to(torch.int64).clamp_(0, self.bins - 1)
            index += unit * self.bins
            flat.index_add_(0, index, torch.ones_like(index))
        self._raise_floor()

    def _raise_floor(self) -> None:
        """Once the values so far put q * expected of them above a bin edge, T_u cannot fall below that edge."""
        if self.expected is None:
            return
        wanted = self.quantile * self.expected
        from_top = self._counts.flip(1).cumsum(1)
        reached = from_top[:, -1] >= wanted
        bins_above = (from_top < wanted).sum(dim=1).clamp(max=self.bins - 1)
        edge = self._low + self._width * (self.bins - 1 - bins_above)
        self._floor = torch.where(reached, torch.maximum(self._floor, edge), self._floor)

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
