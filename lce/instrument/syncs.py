"""Counting the operations that make the host wait for a CUDA device, on any device (the CPU included).

    with SyncCounter() as counter:
        dissect(model, ["layer4"], dataset, settings, torch.device("cpu"))
    counter.total, counter.counts.most_common(3)  # e.g. 7, [("nonzero", 4), ("__bool__", 2), ("cpu", 1)]

On CUDA, an operation whose result's size or value the host must know waits for every kernel queued before it,
and the GPU then idles until the host queues more. SyncCounter is a torch function mode that counts, by name,
the calls that would do so, whatever device they run on, so that a test on the CPU can hold the engine to a
number of them per batch. Counted (one count per outermost call; calls inside a counted one are not seen):

- reads of a value on the host: Tensor.__bool__, item, __int__, __float__, __index__, __complex__, tolist,
  numpy, cpu, equal, allclose, is_nonzero; to(...) from a non-CPU device to the CPU;
- results whose size is data-dependent: nonzero, argwhere, torch.where(cond) with one argument, masked_select,
  unique, unique_consecutive, bincount (its length depends on the largest value), histc, repeat_interleave
  without output_size, and __getitem__ / __setitem__ / index_put_ with a boolean index (alone or in a tuple);
- host data to the device: torch.tensor and torch.as_tensor (the engine makes them to use on the device, where
  a copy from pageable memory blocks), and to(...) from the CPU to another device without non_blocking.

Not counted, and why: torch.quantile with a float q (it checks q on the host and only a tensor q on the device;
no sync), topk/sort/cumsum/scatter/index_add_/index_put_ with integer indices (sizes known on the host; index
bounds are checked on the device). What it misses, compared with torch.cuda.set_sync_debug_mode("warn") on a
device: torch.from_numpy (not dispatched to torch function modes; it makes no copy, and its .to(device) is what
syncs), and every .to(device) / copy_ run on the CPU, where the source and the target are both the host (a
blocking copy of host data to the device, such as a DataLoader batch's .to("cuda") without non_blocking, is only
seen on a device); syncs inside C++ kernels that the Python call does not show (none known among the operations
above); cudaMalloc retries when the caching allocator frees memory; and anything run with the mode paused.
`paused()` leaves out host-side work that is not the code under test (a DataLoader's collation, say).
"""

from __future__ import annotations

from collections import Counter
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

# Reads of a value on the host, and results whose size depends on the data: counted whatever the arguments.
_ALWAYS = ("__bool__", "item", "__int__", "__float__", "__index__", "__complex__", "tolist", "numpy", "cpu",
           "equal", "allclose", "is_nonzero", "nonzero", "argwhere", "masked_select", "unique",
           "unique_consecutive", "bincount", "histc")
_HOST_DATA = ("tensor", "as_tensor")  # host data made into a tensor (for the device)


def _named(names: tuple[str, ...]) -> dict:
    """The functions and Tensor methods of these names -> the name."""
    found = {}
    for name in names:
        for owner in (torch, torch.Tensor):
            function = getattr(owner, name, None)
            if function is not None:
                found[function] = name
    return found


_ALWAYS_FUNCTIONS = _named(_ALWAYS)
_HOST_DATA_FUNCTIONS = _named(_HOST_DATA)
_WHERE = {torch.where, torch.Tensor.where}
_REPEAT_INTERLEAVE = {torch.repeat_interleave, torch.Tensor.repeat_interleave}
_INDEXING = {torch.Tensor.__getitem__: "__getitem__", torch.Tensor.__setitem__: "__setitem__",
             torch.Tensor.index_put_: "index_put_", torch.Tensor.index_put: "index_put",
             torch.index_put: "index_put"}
_TO = {torch.Tensor.to}


# The engine's bound, held by tests/test_device_syncs.py and measured on CUDA by bench/gpu_check.py. Pass 2: one host
# read per batch and layer (the number of cells that can exceed T_u, which sizes the chunks); pass 1: none while no
# window flushes (top images, running top, histogram all sync-free).
SYNCS_PER_BATCH = 1
# A window's flush: whether it is the first (1), whether every unit has a floor, once per round (1 round here),
# the number of cells left above the floors (1), and a running top's compaction of its pairs (1: its widest row).
SYNCS_PER_WINDOW = 4

class SyncCounter(TorchFunctionMode):
    """A context manager counting the calls that would synchronise the host with a CUDA device (see the module
    docstring): `counts` by operation name, `total` in all."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._paused = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @contextmanager
    def paused(self):
        """Count nothing inside (host-side work that is not the code being counted)."""
        self._paused += 1
        try:
            yield
        finally:
            self._paused -= 1

    def uncounted(self, batches):
        """`batches` (a DataLoader, say), iterated with the counter paused, as often as it is iterated: its host
        work (collation; in workers on a GPU, where it never touches the device) is not the code being counted."""
        return _Uncounted(self, batches)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if not self._paused:
            name = _sync_of(func, args, kwargs)
            if name is not None:
                self.counts[name] += 1
        return func(*args, **kwargs)


class _Uncounted:
    def __init__(self, counter: SyncCounter, batches):
        self.counter, self.batches = counter, batches

    def __iter__(self):
        with self.counter.paused():
            iterator = iter(self.batches)
        while True:
            with self.counter.paused():
                batch = next(iterator, None)
            if batch is None:
                return
            yield batch


def _sync_of(func, args: tuple, kwargs: dict) -> str | None:
    """The name to count a call under, or None when it would not synchronise."""
    name = _ALWAYS_FUNCTIONS.get(func)
    if name is not None:
        return name
    if func in _HOST_DATA_FUNCTIONS:
        return _HOST_DATA_FUNCTIONS[func]
    if func in _WHERE:
        return "where(cond)" if len(args) + len(kwargs) == 1 else None
    if func in _REPEAT_INTERLEAVE:
        return None if kwargs.get("output_size") is not None else "repeat_interleave"
    if func in _INDEXING:
        index = args[1] if len(args) > 1 else kwargs.get("indices")
        return f"{_INDEXING[func]}[bool]" if _has_mask(index) else None
    if func in _TO:
        return _copy_sync(args, kwargs)
    return None


def _has_mask(index) -> bool:
    if isinstance(index, torch.Tensor):
        return index.dtype in (torch.bool, torch.uint8)
    if isinstance(index, (tuple, list)):
        return any(_has_mask(part) for part in index)
    return False


def _copy_sync(args: tuple, kwargs: dict) -> str | None:
    """Tensor.to(...): a copy to the CPU from another device reads on the host; one from the CPU to another
    device blocks unless non_blocking (the host-side buffer may be pageable)."""
    source = args[0]
    target = kwargs.get("device")
    for argument in args[1:]:
        if isinstance(argument, (str, torch.device)):
            target = argument
        elif isinstance(argument, torch.Tensor):
            target = argument.device
    if target is None:
        return None
    target = torch.device(target)
    if source.device.type != "cpu" and target.type == "cpu":
        return "to(cpu)"
    non_blocking = kwargs.get("non_blocking", False) or any(a is True for a in args[2:])
    if source.device.type == "cpu" and target.type != "cpu" and not non_blocking:
        return "to(device)"
    return None
