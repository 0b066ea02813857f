"""The `gridcall` command and the composition root: the one place that imports every service."""
