"""gridcall's shared kernel: event contracts, bus, storage, outbox/inbox, settings, clock,
jurisdiction. It imports no service."""
