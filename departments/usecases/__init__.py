"""The departments' use cases, which the staff API, the adapters and the CLI drive: the
actions on tickets (tickets.py), reading queues and tickets (queue.py), and staff accounts
with the tokens that name them (staff.py)."""
