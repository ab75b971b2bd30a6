"""Network dissection: thresholds, upsampling, tallies, and the two passes over a probe (docs/method.md section 1)."""
