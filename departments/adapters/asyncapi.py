"""The adapters' Kafka contract as an AsyncAPI 3.0 document, generated from the models in
departments/adapters/messages.py: served at /asyncapi.json by the departments service and
checked in as docs/asyncapi.yaml (a test regenerates it and fails on any difference):

    python -m departments.adapters.asyncapi > docs/asyncapi.yaml

The operations are gridcall's: it sends assignments and receives updates."""

import sys
from typing import Any, Literal

import yaml
from fastapi import APIRouter
from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from departments.adapters.messages import AssignmentData, CloudEvent, ReopenedData, UnassignedData, Update
from services.messaging.bus import ID_HEADER

VERSION = "1.0.0"
SCHEMAS = "#/components/schemas/"
KAFKA_BINDING = "0.5.0"

# What gridcall sends on a unit's assignments topic: (message name, CloudEvents type, data).
SENT: list[tuple[str, str, type[BaseModel]]] = [
    ("assigned", "gridcall.case.assigned", AssignmentData),
    ("unassigned", "gridcall.case.unassigned", UnassignedData),
    ("reopened", "gridcall.case.reopened", ReopenedData),
]


def _event_model(name: str, kind: str, data: type[BaseModel]) -> type[BaseModel]:
    """The CloudEvent of one type: the envelope with its `type` and `data` pinned."""
    title = "".join(part.title() for part in name.split("_")) + "Event"
    return create_model(
        title,
        __base__=CloudEvent,
        __doc__=f"{kind} as a CloudEvents 1.0 structured event. {data.__doc__ or ''}".strip(),
        type=(Literal[kind], Field(description="the CloudEvents type")),  # type: ignore[valid-type, arg-type]
        data=(data, ...),
    )


def _parameters() -> dict[str, Any]:
    return {
        "prefix": {
            "description": "the deployment's topic prefix (GRIDCALL_TOPIC_PREFIX)",
            "default": "gridcall",
            "examples": ["gridcall"],
        },
        "unit_id": {
            "description": "the unit whose adapter has kafka: true in the district file",
            "examples": ["D-BUS"],
        },
    }


def document() -> dict[str, Any]:
    events = [(name, kind, _event_model(name, kind, data)) for name, kind, data in SENT]
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(m, "serialization") for _, _, m in events]
    wanted.append((Update, "validation"))
    refs, top = models_json_schema(wanted, ref_template=SCHEMAS + "{model}")
    schemas = top.get("$defs", {})

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, str]:
        return dict(refs[(model, mode)])

    messages: dict[str, Any] = {
        name: {
            "name": kind,
            "title": kind,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/cloudevents+json",
            "headers": {
                "type": "object",
                "properties": {
                    "content-type": {
                        "type": "string",
                        "const": "application/cloudevents+json",
                        "description": "CloudEvents structured mode: the record's value is the whole event",
                    },
                    "ce_type": {"type": "string", "const": kind, "description": "the event's type, as in the value"},
                },
            },
            "payload": ref(model, "serialization"),
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": "the case id: one case's messages arrive in order"},
                    "bindingVersion": KAFKA_BINDING,
                }
            },
        }
        for name, kind, model in events
    }
    messages["update"] = {
        "name": "update",
        "title": "update",
        "summary": "What the department's system says about a ticket: accepted, progress, resolved or rejected.",
        "description": (
            "The same body as POST /v1/adapters/{unit_id}/events. accepted claims the ticket, progress adds "
            "a public note, resolved resolves it (a note is required), rejected returns it (退单; reason_code "
            "and the note as the reason are required). Applied once per ce_id: the same id again changes "
            "nothing (ids are shared with the webhook-ids of the unit's inbound requests). An update that "
            "is not valid, names a ticket not in the unit's queue or that the ticket's state does not allow "
            "is parked as a dead letter with the error (GET /v1/ops/deadletters)."
        ),
        "contentType": "application/json",
        "headers": {
            "type": "object",
            "required": [ID_HEADER],
            "properties": {
                ID_HEADER: {
                    "type": "string",
                    "minLength": 1,
                    "description": "a unique id of this update, the same on every resend (CloudEvents id)",
                }
            },
        },
        "payload": ref(Update, "validation"),
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": "the ticket id: one ticket's updates are applied in order"},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }
    channel_messages = {
        "assignments": {name: {"$ref": f"#/components/messages/{name}"} for name, _, _ in events},
        "updates": {"update": {"$ref": "#/components/messages/update"}},
    }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:gridcall:departments:adapters",
        "info": {
            "title": "gridcall department adapters",
            "version": VERSION,
            "description": (
                "A department's own system and gridcall over Kafka: assignments out on "
                "`<prefix>.dept.<unit_id>.assignments`, updates back on `<prefix>.dept.<unit_id>.updates`. "
                "The same messages travel as webhooks (docs/adapters.md). "
                "Generated from departments/adapters/messages.py; the operations are gridcall's."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "the deployment's Kafka brokers",
                "variables": {"bootstrap": {"default": "localhost:9092", "description": "host:port of a broker"}},
            }
        },
        "channels": {
            face: {
                "address": f"{{prefix}}.dept.{{unit_id}}.{face}",
                "title": f"a unit's {face}",
                "messages": channel_messages[face],
                "parameters": _parameters(),
            }
            for face in ("assignments", "updates")
        },
        "operations": {
            "sendAssignments": {
                "action": "send",
                "channel": {"$ref": "#/channels/assignments"},
                "summary": "gridcall publishes each assignment, withdrawal and reopening for the unit, keyed by case",
                "messages": [{"$ref": f"#/channels/assignments/messages/{name}"} for name, _, _ in events],
            },
            "receiveUpdates": {
                "action": "receive",
                "channel": {"$ref": "#/channels/updates"},
                "summary": "gridcall applies the unit's updates to its tickets, each ce_id once",
                "messages": [{"$ref": "#/channels/updates/messages/update"}],
            },
        },
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def router() -> APIRouter:
    api = APIRouter()
    doc = document()

    @api.get("/asyncapi.json", include_in_schema=False)
    async def asyncapi() -> dict[str, Any]:
        """The adapters' Kafka contract (AsyncAPI 3.0)."""
        return doc

    return api


if __name__ == "__main__":
    sys.stdout.write(to_yaml(document()))
