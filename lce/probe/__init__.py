"""Probe datasets in the Broden format: reading, checking, registering, caching, and a synthetic generator."""
