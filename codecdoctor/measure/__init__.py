"""The measure stage: numbers only. Nothing here builds a Finding, a figure or a progress bar."""
