"""Network dissection: thresholds, upsampling, tallies, and the two passes over a probe (method.md section 1)."""
