"""The ingest: one model's run (run.py), a plan of many (plan.py, its rows.py) over executors, and controls.

It orchestrates the method (lce.dissect), the probe, the models and the store; the command line calls it.
"""
