"""One outbound delivery mechanism for every service: a message to someone outside gridcall
(a department's system, a resident's inbox or phone, an app's webhook) is one row in the
service's deliveries table (`tables.delivery_table`), written in the transaction that decided
to send it, and sent after commit by the one worker (`worker.py`) through the channel's
`Sender` (`sender.py`), retried on one schedule (`retries.py`), listed and re-driven by ops
(`ops.py`). Its states follow GOV.UK Notify's: see `tables.State`."""
