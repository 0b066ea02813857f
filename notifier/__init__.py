"""Tells residents, staff and ops what happened, over pluggable channels."""
