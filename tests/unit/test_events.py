import uuid
from datetime import UTC, datetime
from unittest import mock

import pytest

from services.district.events import CaseAssigned, CaseReported, Location, Stream, Tier
from services.district.text import first_unstorable
from services.messaging.envelope import EVENT_TYPES, Envelope, UnknownEvent

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def test_envelope_round_trips_through_json_with_cloudevents_attributes():
    event = CaseReported(
        case_id="c1",
        category="garbage",
        description="bags in the stairwell",
        location=Location(lat=30.505, lon=114.305),
        grid_id="G11",
    )
    env = Envelope.wrap(event, source="/intake", time=NOW)
    decoded = Envelope.decode(env.encode())
    assert decoded == env
    assert decoded.event() == event
    assert (decoded.specversion, decoded.type, decoded.subject) == ("1.0", "gridcall.case.reported", "c1")
    assert decoded.source == "/intake" and decoded.time == NOW and decoded.schemaversion == 1


GOLDEN = (
    b'{"specversion":"1.0","id":"00000000-0000-0000-0000-000000000001","type":"gridcall.case.reported",'
    b'"source":"/intake","time":"2026-11-02T09:30:00Z","subject":"c1","schemaversion":1,'
    b'"datacontenttype":"application/json","data":{"case_id":"c1","category":"garbage",'
    b'"description":"bags \xe2\x80\x9cin\xe2\x80\x9d the stairwell","location":{"lat":30.505,"lon":114.305},'
    b'"grid_id":"G11","priority":"normal","channel":"app","household_flag":null,'
    b'"details":{"floor":3,"ok":true,"x":null}}}'
)


def test_wrap_encodes_the_same_bytes_as_before_it_skipped_validation():
    """`wrap` builds the envelope without validating the event again; the wire format is the
    one the validated envelope had (the golden bytes were encoded by the validating wrap)."""
    event = CaseReported(
        case_id="c1",
        category="garbage",
        description="bags \u201cin\u201d the stairwell",
        location=Location(lat=30.505, lon=114.305),
        grid_id="G11",
        details={"floor": 3, "ok": True, "x": None},
    )
    with mock.patch("uuid.uuid4", return_value=uuid.UUID(int=1)):
        assert Envelope.wrap(event, source="/intake", time=NOW).encode() == GOLDEN


def test_wrap_matches_a_validated_envelope_for_every_sample_event():
    for event in _sample_events():
        env = Envelope.wrap(event, source="/dispatcher", time=NOW)
        validated = Envelope(
            id=env.id,
            type=event.type,
            source="/dispatcher",
            time=NOW,
            subject=event.case_id,
            data=event.model_dump(mode="json"),
        )
        assert env.encode() == validated.encode()
        assert Envelope.decode(env.encode()) == env == validated
        assert Envelope.decode(env.encode()).event() == event


def _sample_events() -> list:
    where = Location(lat=30.505, lon=114.305)
    return [
        CaseReported(case_id="c1", category="garbage", description="bags", location=where, grid_id="G11"),
        CaseReported(
            case_id="c2",
            category="light",
            description="dark \u00e9 \U0001f600",
            location=where,
            grid_id="G12",
            details={"address": {"street": "Hankou"}, "media": ["a.jpg"], "n": 1.5},
        ),
        CaseAssigned(
            case_id="c3",
            assignment_id="a1",
            unit_id="U",
            unit_name="Unit",
            tier=Tier.GRID,
            category="garbage",
            description="d",
            grid_id="G11",
            response_due=NOW,
            resolution_due=NOW,
        ),
    ]


def test_each_event_names_a_stream_and_a_unique_type():
    assert all(cls.stream in (Stream.CASES, Stream.TICKETS) for cls in EVENT_TYPES.values())
    assert len({cls.type for cls in EVENT_TYPES.values()}) == len(EVENT_TYPES)


def test_unknown_type_and_garbage_are_unknown_events():
    env = Envelope.wrap(
        CaseAssigned(
            case_id="c1",
            assignment_id="a1",
            unit_id="U",
            unit_name="U",
            tier=Tier.GRID,
            category="garbage",
            description="d",
            grid_id="G11",
            response_due=NOW,
            resolution_due=NOW,
        ),
        source="/dispatcher",
        time=NOW,
    )
    with pytest.raises(UnknownEvent):
        env.model_copy(update={"type": "gridcall.case.teleported"}).event()
    with pytest.raises(UnknownEvent):
        Envelope.decode(b"not json")


def test_event_data_with_a_wrong_field_is_refused():
    env = Envelope(id="e1", type=CaseReported.type, source="/x", time=NOW, subject="c1", data={"case_id": "c1"})
    with pytest.raises(ValueError):
        env.event()


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": [{"b": "x\x00y"}]}, ("a", 0, "b")),
        ({"a\x00": 1}, ("a\x00",)),
        ({"a": "\ud800"}, ("a",)),
        ({"a": [1.0, float("inf")]}, ("a", 1)),
        ({"at": datetime(2026, 1, 1, tzinfo=UTC), "a": float("nan")}, ("a",)),
        ({"a": "a backslash and u0000 as text: \\u0000", "b": "中文", "at": datetime(2026, 1, 1, tzinfo=UTC)}, None),
    ],
)
def test_the_quick_check_of_storable_text_misses_nothing_the_walk_finds(value, where):
    found = first_unstorable(value)
    assert (found[0] if found else None) == where


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        ('"description": "bags \\u0000 by the gate"', "NUL"),
        ('"description": "\\ud83d\\ude00 \\u00e9 中文 a backslash-u0000 as text: \\\\u0000"', None),
        ('"description": "ok", "details": {"weight": NaN}', "NaN"),
        ('"description": "ok", "details": {"weight": -Infinity}', "Infinity"),
        ('"description": "ok", "details": {"\\u0000": 1}', "NUL"),
    ],
)
def test_a_decoded_envelope_is_checked_for_unstorable_values_whatever_its_text(data, refused):
    """Text that cannot decode to an unstorable value skips the check; the rest is checked."""
    raw = (
        '{"specversion":"1.0","id":"e1","type":"gridcall.case.reported","source":"/x",'
        '"time":"2026-01-01T00:00:00Z","subject":"c1","data":{"case_id":"c1","category":"garbage",'
        f'"location":{{"lat":30.5,"lon":114.3}},"grid_id":"G11",{data}}}}}'
    ).encode()
    if refused is None:
        assert Envelope.decode(raw).event().description.startswith("\U0001f600 é 中文")
    else:
        with pytest.raises(UnknownEvent, match=refused):
            Envelope.decode(raw)
