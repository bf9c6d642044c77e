from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CustomerRef(_message.Message):
    __slots__ = ("tenant_id", "customer_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    CUSTOMER_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    customer_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., customer_id: _Optional[str] = ...) -> None: ...

class AccountSignals(_message.Message):
    __slots__ = ("plan", "tenure_days", "contract_value_minor", "lifetime_value_minor", "open_tickets", "contacts_last_7_days")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    TENURE_DAYS_FIELD_NUMBER: _ClassVar[int]
    CONTRACT_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_VALUE_MINOR_FIELD_NUMBER: _ClassVar[int]
    OPEN_TICKETS_FIELD_NUMBER: _ClassVar[int]
    CONTACTS_LAST_7_DAYS_FIELD_NUMBER: _ClassVar[int]
    plan: str
    tenure_days: int
    contract_value_minor: int
    lifetime_value_minor: int
    open_tickets: int
    contacts_last_7_days: int
    def __init__(self, plan: _Optional[str] = ..., tenure_days: _Optional[int] = ..., contract_value_minor: _Optional[int] = ..., lifetime_value_minor: _Optional[int] = ..., open_tickets: _Optional[int] = ..., contacts_last_7_days: _Optional[int] = ...) -> None: ...
