"""Imports of published dissection results into lce's tables (one module per format), and of the pending runs that
an ingest kept in a file (pending_runs.py: `lce ingest --resume`)."""
