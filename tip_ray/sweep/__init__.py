"""Sweeps: one base pipeline run under several selection rules, ratios and seeds, with a report."""
