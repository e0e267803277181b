"""Figures per command, drawn at render time from Report.measurements only."""
