"""Imports of published dissection results into lce's tables (one module per format)."""
