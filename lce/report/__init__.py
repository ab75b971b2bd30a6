"""Figures and reports made from stored results."""
