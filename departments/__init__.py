"""Staff-facing tickets: each unit's queue, claim, resolve."""
