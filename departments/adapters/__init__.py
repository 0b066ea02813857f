"""Department adapters: a unit's own IT system connected to gridcall (docs/adapters.md).
Outbound, each assignment is delivered as a signed webhook and/or on the unit's Kafka topic;
inbound, the system's answers (accepted, progress, resolved, rejected) become the same ticket
actions a person's clicks are. Signing follows the Standard Webhooks specification."""
