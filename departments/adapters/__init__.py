"""Department adapters: a unit's own IT system connected to gridcall (docs/adapters.md).
Outbound, each assignment is delivered as a signed webhook and/or on the unit's Kafka topic;
inbound, the system's answers (accepted, progress, resolved, rejected) become the same ticket
actions a person's clicks are. Signing follows the Standard Webhooks specification.

The rooms are the service's: pure messages.py (the contract's models) and signing.py (the
units' keys); outbound.py (what the consumer writes for a unit); usecases.py, handlers.py (the
updates topic), api.py with schemas.py, workers.py (the webhook sender the kernel's delivery
worker, services/delivery/, runs), and asyncapi.py (the contract as a document)."""
