"""Writing results: JSON/CSV, plots, the end-to-end report."""
