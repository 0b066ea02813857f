"""Resident-facing intake: reports in, the resident's view of each case out."""
