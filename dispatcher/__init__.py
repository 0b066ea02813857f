"""The routing core: the case state machine, tiered routing, assignments."""
