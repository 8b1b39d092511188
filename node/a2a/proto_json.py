"""ProtoJSON objects into protobuf messages, by the messages' own descriptors: ``ParseDict``, faster.

Why not ``google.protobuf.json_format.ParseDict``: it is pure Python and generic down to each scalar, so a
finished task costs about 250 µs there, the largest cost of a gRPC call on this node (measured: a third of the
server's CPU per SendMessage). Here how each message type is filled is chosen once per type, and how each of
its fields is set once per field (:func:`_filler`), so filling costs one dict lookup per key present (strings
and messages are set in the loop, other fields by one call), with the values set through the C (upb) message
classes; the well-known types the A2A proto uses (Struct, Value, ListValue, Timestamp) have their own helpers
(a finished echo task: about 14 µs). What is
converted is read from the descriptors of a2a-sdk's generated classes, so nothing here names an A2A field;
``tests/test_a2a_bindings.py`` checks the result equals ``ParseDict``'s, empty objects and nulls included.

Unknown fields are dropped (as ``ParseDict(..., ignore_unknown_fields=True)``); a value of the wrong type raises
:class:`ValueError`.

The other way, :func:`to_json` is ``MessageToDict`` for the same reason (a gRPC request is read into ProtoJSON
on every call, a reply on every call of our client): the set fields come from ``ListFields`` (C), and each
field's JSON name and conversion are chosen once per field descriptor. ``tests/test_a2a_bindings.py`` checks
it equals ``MessageToDict``'s.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"
_TIMESTAMP = "google.protobuf.Timestamp"
_EMPTY = "google.protobuf.Empty"


Fill = Callable[[Any, Any], None]
"""Fills one message (or one field of a message) from its ProtoJSON value."""


def to_message(data: Mapping[str, Any], message: Message) -> Message:
    """Fill ``message`` from the ProtoJSON object ``data``; returns ``message``."""
    _filler(message.DESCRIPTOR)(message, data)
    return message


@cache
def _filler(descriptor: Descriptor) -> Fill:
    """How a message of this type is filled, chosen once per type: the well-known types by their helpers, any
    other message field by field, each field's handling chosen once: a string, a message or a repeated message
    field is set right in the loop (a call per field costs more than the setting), any other by its setter
    (:func:`_setter`), so filling a message costs one dict lookup per key present and about nothing else."""
    special = _WELL_KNOWN.get(descriptor.full_name)
    if special is not None:
        return special
    specs: dict[str, tuple[int, str, Any]] = {}
    for f in descriptor.fields:
        specs[f.name] = specs[f.json_name] = _spec(f)
    name = descriptor.full_name

    def fill(message: Any, data: Any) -> None:
        if data.__class__ is not dict and not isinstance(data, Mapping):  # the exact type first: ABCs are slow
            raise ValueError(f"{name}: expected an object, got {type(data).__name__}")
        message.SetInParent()  # an empty object is still a present message
        for key, value in data.items():
            spec = specs.get(key)
            if spec is None:
                continue
            kind, attribute, how = spec
            if value is None and kind != _NULLABLE:  # null is "not set", except in a Value (NullValue)
                continue
            if kind == _STRING:
                if value.__class__ is not str and not isinstance(value, str):
                    raise ValueError(f"{name}.{attribute}: expected a string")
                setattr(message, attribute, value)
            elif kind == _MESSAGE or kind == _NULLABLE:
                _filler(how)(getattr(message, attribute), value)
            elif kind == _MESSAGES:
                if value.__class__ is not list and not isinstance(value, list):
                    raise ValueError(f"{name}.{attribute}: expected an array")
                container, fill_one = getattr(message, attribute), _filler(how)
                for item in value:
                    fill_one(container.add(), item)
            else:
                how(message, value)

    return fill


_STRING, _MESSAGE, _MESSAGES, _NULLABLE, _OTHER = range(5)


def _spec(field: FieldDescriptor) -> tuple[int, str, Any]:
    """How :func:`_filler`'s loop sets ``field``: (kind, attribute, the message type or the setter)."""
    kind = field.message_type
    if kind is not None and not kind.GetOptions().map_entry:
        if not field.is_repeated:
            return (_NULLABLE if kind.full_name == _VALUE else _MESSAGE), field.name, kind
        return _MESSAGES, field.name, kind
    if field.type == FieldDescriptor.TYPE_STRING and not field.is_repeated:
        return _STRING, field.name, None
    return _OTHER, field.name, _setter(field)


def _setter(field: FieldDescriptor) -> Fill:
    """Sets ``field`` of a message from its ProtoJSON value: a map, a repeated scalar, an enum or a scalar other
    than a string (:func:`_filler` sets the other fields itself)."""
    name = field.name
    if field.message_type is not None:  # a map: the only message field _filler leaves to a setter
        return lambda message, value: _fill_map(getattr(message, name), field, value)
    if field.is_repeated:
        def repeated_scalars(message: Any, value: Any) -> None:
            if not isinstance(value, list):
                raise ValueError(f"{field.full_name}: expected an array")
            getattr(message, name).extend(_scalar(field, item) for item in value)

        return repeated_scalars
    if field.enum_type is not None:
        numbers = {value.name: value.number for value in field.enum_type.values}

        def enum(message: Any, value: Any) -> None:
            number = numbers.get(value) if isinstance(value, str) else None
            if number is None:
                number = _scalar(field, value)  # a number, or an error that says why not
            setattr(message, name, number)

        return enum
    if field.type == FieldDescriptor.TYPE_STRING:  # the most common field: its check inline
        def string(message: Any, value: Any) -> None:
            if not isinstance(value, str):
                raise ValueError(f"{field.full_name}: expected a string")
            setattr(message, name, value)

        return string
    return lambda message, value: setattr(message, name, _scalar(field, value))


def _fill_map(container: Any, field: FieldDescriptor, value: Any) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{field.full_name}: expected an object")
    value_field = field.message_type.fields_by_name["value"]
    for key, item in value.items():
        if value_field.message_type is not None:
            _filler(value_field.message_type)(container[key], item)
        else:
            container[key] = _scalar(value_field, item)


def _fill_struct(message: Any, value: Any) -> None:
    """A Struct, present even when empty (``Struct.update`` leaves ``{}`` unset: a data part would lose its
    content), its values by :func:`_set_value` in C setters (``update`` walks them in Python)."""
    if not isinstance(value, Mapping):
        raise ValueError("google.protobuf.Struct: expected an object")
    message.SetInParent()
    fields = message.fields
    for key, item in value.items():
        _set_value(fields[key], item)


def _fill_list(message: Any, value: Any) -> None:
    """A ListValue, present even when empty, as :func:`_fill_struct`."""
    if not isinstance(value, list):
        raise ValueError("google.protobuf.ListValue: expected an array")
    message.SetInParent()
    values = message.values
    for item in value:
        _set_value(values.add(), item)


def _fill_empty(message: Any, _value: Any) -> None:
    message.SetInParent()


def _set_timestamp(message: Any, value: Any) -> None:
    """RFC 3339 text; ``datetime.fromisoformat`` (C) for the common case, the proto's own parser otherwise."""
    if not isinstance(value, str):
        raise ValueError("google.protobuf.Timestamp: expected RFC 3339 text")
    if len(value) > _UTC_MICROSECONDS or value[-1] != "Z":  # not the node's own form (UTC, at most microseconds)
        dot = value.find(".")
        digits = len(value[dot + 1:]) - len(value[dot + 1:].lstrip("0123456789")) if dot >= 0 else 0
        if digits > 6:  # nanoseconds: more than a datetime holds
            message.FromJsonString(value)
            return
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        message.FromJsonString(value)
        return
    if moment.tzinfo is None:
        raise ValueError("google.protobuf.Timestamp: the time zone is missing")
    since = moment - _EPOCH  # timedelta arithmetic in C; its days and seconds floor, as the proto's fields do
    message.seconds = since.days * 86400 + since.seconds
    message.nanos = since.microseconds * 1000


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_MICROSECONDS: Final = len("2026-01-01T00:00:00.000000Z")


def _set_value(message: Any, value: Any) -> None:
    if value is None:
        message.null_value = 0
    elif isinstance(value, bool):
        message.bool_value = value
    elif isinstance(value, int | float):
        message.number_value = value
    elif isinstance(value, str):
        message.string_value = value
    elif isinstance(value, Mapping):
        _fill_struct(message.struct_value, value)
    elif isinstance(value, list):
        _fill_list(message.list_value, value)
    else:
        raise ValueError(f"google.protobuf.Value: cannot hold {type(value).__name__}")


_WELL_KNOWN: dict[str, Fill] = {_STRUCT: _fill_struct, _VALUE: _set_value, _LIST: _fill_list,
                                _TIMESTAMP: _set_timestamp, _EMPTY: _fill_empty}


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    if field.enum_type is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        number = field.enum_type.values_by_name.get(value) if isinstance(value, str) else None
        if number is None:
            raise ValueError(f"{field.full_name}: {value!r} is not a {field.enum_type.name}")
        return number.number
    if field.type == FieldDescriptor.TYPE_BYTES:
        if not isinstance(value, str):
            raise ValueError(f"{field.full_name}: expected base64 text")
        text = value.replace("-", "+").replace("_", "/")
        return base64.b64decode(text + "=" * (-len(text) % 4))
    if field.type == FieldDescriptor.TYPE_STRING:
        if not isinstance(value, str):
            raise ValueError(f"{field.full_name}: expected a string")
        return value
    if field.type == FieldDescriptor.TYPE_BOOL:
        if not isinstance(value, bool):
            raise ValueError(f"{field.full_name}: expected a boolean")
        return value
    if field.cpp_type in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return float(value)
    if isinstance(value, bool):
        raise ValueError(f"{field.full_name}: expected an integer")
    return int(value)  # ProtoJSON writes 64-bit integers as strings


# ---- protobuf -> ProtoJSON -----------------------------------------------------------------------------------
_INT64 = frozenset({FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64})
_FLOATS = frozenset({FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE})


def to_json(message: Message) -> dict[str, Any]:
    """The ProtoJSON object of ``message``, as ``MessageToDict(message)`` makes it (fields that are set, by JSON
    name; 64-bit integers as strings, enums by name, bytes in base64)."""
    value = _message_json(message)
    if not isinstance(value, dict):
        raise ValueError(f"{message.DESCRIPTOR.full_name} is not a JSON object in ProtoJSON")
    return value


def _message_json(message: Any) -> Any:
    return _json_of(message.DESCRIPTOR)(message)


@cache
def _json_of(descriptor: Descriptor) -> Callable[[Any], Any]:
    """How a message of this type becomes JSON, chosen once per type: the well-known types by their helpers,
    any other by its set fields (``ListFields``), each by its JSON name and converter (chosen once per field)."""
    kind = descriptor.full_name
    if kind == _STRUCT:
        return lambda message: {key: _value_json(item) for key, item in message.fields.items()}
    if kind == _VALUE:
        return _value_json
    if kind == _LIST:
        return lambda message: [_value_json(item) for item in message.values]
    if kind == _TIMESTAMP:
        return lambda message: message.ToJsonString()
    return _fields_json


def _fields_json(message: Any) -> dict[str, Any]:
    out = {}
    for field, value in message.ListFields():
        name, convert = _named(field)
        out[name] = convert(value)
    return out


@cache
def _named(field: FieldDescriptor) -> tuple[str, Callable[[Any], Any]]:
    return field.json_name, _converter(field)


def _value_json(value: Any) -> Any:
    which = value.WhichOneof("kind")
    if which is None or which == "null_value":
        return None
    if which == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValueError("google.protobuf.Value: a number that is not finite has no JSON form")
        return number
    if which == "struct_value":
        return {key: _value_json(item) for key, item in value.struct_value.fields.items()}
    if which == "list_value":
        return [_value_json(item) for item in value.list_value.values]
    return getattr(value, which)


@cache
def _converter(field: FieldDescriptor) -> Callable[[Any], Any]:
    """How one field's value becomes JSON (chosen once per field)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        item = _converter(field.message_type.fields_by_name["value"])
        return lambda value: {str(key): item(value[key]) for key in value}
    single = _single(field)
    if field.is_repeated:
        return lambda value: [single(item) for item in value]
    return single


def _single(field: FieldDescriptor) -> Callable[[Any], Any]:
    if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
        return _message_json
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        if field.enum_type.full_name == "google.protobuf.NullValue":
            return lambda value: None
        names = {number: value.name for number, value in field.enum_type.values_by_number.items()}
        return lambda value: names.get(value, value)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return lambda value: base64.b64encode(value).decode()
    if field.cpp_type in _INT64:
        return str
    if field.cpp_type in _FLOATS:
        return _float_json
    return _same


def _same(value: Any) -> Any:
    return value


def _float_json(value: float) -> Any:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
