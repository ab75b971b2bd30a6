"""The ingest: one model's run (run.py), a plan of many (plan.py) over executors, resumed runs and controls.

It orchestrates the method (lce.dissect), the probe, the models and the store; the command line calls it.
"""
