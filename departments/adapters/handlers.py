"""The adapters' event handler: each record of a unit's updates topic
(`<prefix>.dept.<unit_id>.updates`) becomes the same work as the unit's signed webhook
(departments/adapters/usecases.py), run by a TopicConsumer of its own per unit (bootstrap.py)."""

from departments.adapters.usecases import apply, once_key, parse
from departments.usecases.tickets import Desk
from services.district.errors import Invalid
from services.messaging.bus import ID_HEADER, Record
from services.messaging.consumer import Decode, Work
from services.messaging.transaction import Tx

UPDATE_TYPE = "gridcall.adapter.update"  # how an update shows in the logs and the dead letters


def decoder(desk: Desk, unit_id: str) -> Decode:
    """A record of the unit's updates topic as a consumer's work: the `ce_id` header (the
    CloudEvents Kafka binding's id, required) is its key in the inbox, shared with the
    webhook-ids of the unit's inbound requests; a record without it, or whose body is not a
    valid update, is parked with the reason."""

    def decode(record: Record) -> Work | Exception:
        message_id = record.headers.get(ID_HEADER)
        if not message_id:
            return Invalid(f"an update needs a {ID_HEADER} header: its unique id, the same on every resend")
        try:
            update = parse(record.value)
        except Invalid as exc:
            return exc

        async def effect(tx: Tx) -> None:
            await apply(desk, unit_id, update, message_id, tx)

        return Work(record, once_key(message_id), record.key, UPDATE_TYPE, effect)

    return decode
