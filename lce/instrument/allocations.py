"""Watching what a computation allocates, tensor by tensor, on any device: the check of a MemoryPlan on the CPU.

    with AllocationWatch() as watch:
        watch.phase("pass 1")
        dissect(...)
    watch.peaks          # {"pass 1": bytes, ...}: the most bytes alive at once in each phase
    watch.peak           # the most over all phases

A torch dispatch mode sees every tensor an operation returns (the temporaries inside composite operations too).
A result that shares no storage with the operation's inputs is a new allocation; its bytes count until the last
tensor on that storage is garbage collected (views and in-place results keep the storage alive, not counted
twice). Tensors made before the watch started are not counted: only what the computation adds. On CUDA,
torch.cuda.max_memory_allocated says the same more cheaply (bench/gpu_check.py compares both with the plan).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class AllocationWatch(TorchDispatchMode):
    """Bytes alive at once, per phase (see the module docstring). `phase(name)` starts a phase; its peak starts
    from what is alive at that moment."""

    def __init__(self):
        super().__init__()
        self._alive: dict[int, list[int]] = {}  # storage address -> [bytes, tensors on it]
        self.current = 0  # bytes alive now
        self.peak = 0
        self.peaks: dict[str, int] = {}
        self._phase: str | None = None

    def phase(self, name: str) -> None:
        self._phase = name
        self.peaks[name] = max(self.peaks.get(name, 0), self.current)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        inputs = {_address(t) for t in _tensors((args, kwargs))}
        for tensor in _tensors(result):
            address = _address(tensor)
            entry = self._alive.get(address)
            if entry is None:
                if address in inputs or address == 0:
                    continue  # a view or in-place result of a tensor made before the watch: not ours
                entry = self._alive[address] = [tensor.untyped_storage().nbytes(), 0]
                self.current += entry[0]
                self.peak = max(self.peak, self.current)
                if self._phase is not None:
                    self.peaks[self._phase] = max(self.peaks.get(self._phase, 0), self.current)
            entry[1] += 1
            weakref.finalize(tensor, self._release, address)
        return result

    def _release(self, address: int) -> None:
        entry = self._alive.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._alive[address]
            self.current -= entry[0]


def _address(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage().data_ptr()


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    if isinstance(tree, dict):
        return [t for item in tree.values() for t in _tensors(item)]
    return []
