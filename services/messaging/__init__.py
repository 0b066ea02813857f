"""Outbox, inbox and the consumer loop: how every service changes state and talks.

- A service changes its tables and records the events it emits in ONE transaction
  (`Store.transaction()` + `Tx.emit`); the `Relay` later publishes outbox rows to the bus
  and deletes them. Nothing is published inside the transaction, nothing after commit.
- A `Consumer` handles a batch of records in one transaction that also inserts each one's
  `(consumer, event id)` into the inbox, so a redelivered event changes nothing; if one
  record fails, the batch is taken again one record per transaction. Bus offsets are
  committed only after the effects are.
- A record that cannot be handled (bad payload, a bug) is parked in the service's dead-letter
  table with the error, until ops re-drive it; a transient failure (database or broker away)
  is retried until it passes.
"""
