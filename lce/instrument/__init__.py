"""Counting what the engine does on a device (allocations, host syncs), for tests and benches; not the method."""
