from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WebhookEvent(_message.Message):
    __slots__ = ("schema_version", "tenant", "source", "provider", "event_type", "delivery_id", "dedup_key", "received_at_ms", "headers", "compression", "payload")
    class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        COMPRESSION_NONE: _ClassVar[WebhookEvent.Compression]
        COMPRESSION_ZSTD: _ClassVar[WebhookEvent.Compression]
    COMPRESSION_NONE: WebhookEvent.Compression
    COMPRESSION_ZSTD: WebhookEvent.Compression
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DELIVERY_ID_FIELD_NUMBER: _ClassVar[int]
    DEDUP_KEY_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_AT_MS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    schema_version: int
    tenant: str
    source: str
    provider: str
    event_type: str
    delivery_id: str
    dedup_key: str
    received_at_ms: int
    headers: _containers.ScalarMap[str, str]
    compression: WebhookEvent.Compression
    payload: bytes
    def __init__(self, schema_version: _Optional[int] = ..., tenant: _Optional[str] = ..., source: _Optional[str] = ..., provider: _Optional[str] = ..., event_type: _Optional[str] = ..., delivery_id: _Optional[str] = ..., dedup_key: _Optional[str] = ..., received_at_ms: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., compression: _Optional[_Union[WebhookEvent.Compression, str]] = ..., payload: _Optional[bytes] = ...) -> None: ...
