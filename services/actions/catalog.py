"""A tenant's connector catalog: the tools the assistant may use on the company's
systems, declared in one versioned JSON file per tenant (services/actions/catalogs/
by default; `ACTIONS_CATALOG_DIR` names another folder).

Everything a tool needs is declared: its JSON Schema, the HTTP call, what of
the answer is kept, who owns the record it reads, the records a write reads
first, the policy's preconditions over them, the approval rules, and the
summary the customer says yes to. Loading checks all of it (schemas, every
expression and the names it uses, hosts against the allow-lists), so a broken
catalog fails at boot, never in front of a customer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

# Typed by types-jsonschema where installed (asked for in pyproject's test extras).
import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from servicekit.ids import is_id
from services.actions.expressions import Expression, ExpressionError, compile_expression, format_value

DEFAULT_CATALOG_DIR = Path(__file__).with_name("catalogs")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
# Names every expression may use besides the tool's own.
CUSTOMER = "customer"
RECORD = "record"
EACH = "each"


class CatalogError(ValueError):
    """A catalog that cannot be served; the message says which file and what."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthSpec(_Spec):
    # The secret is never in the catalog: only the name of the environment variable holding it.
    secret_env: str = Field(pattern=r"^[A-Z][A-Z0-9_]{0,127}$")
    scheme: Literal["bearer", "header"] = "bearer"
    # For scheme "header": the header that carries the secret as it is.
    header: str = "Authorization"


class ConnectorSpec(_Spec):
    base_url: str
    # An environment variable that, when set, replaces base_url (the deployment knows where
    # the company's system is); the host must still be allow-listed.
    base_url_env: str = Field("", pattern=r"^([A-Z][A-Z0-9_]{0,127})?$")
    allowed_hosts: list[str] = Field(default_factory=list)
    # Hosts that may resolve to private, loopback or link-local addresses. Every other host
    # must resolve to public addresses only (no reaching the cluster or cloud metadata).
    allowed_private_hosts: list[str] = Field(default_factory=list)
    auth: AuthSpec | None = None
    timeout_s: float = Field(5.0, gt=0, le=60)
    max_response_bytes: int = Field(256 * 1024, ge=1024, le=16 * 1024 * 1024)


class CheckSpec(_Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    rule: str
    # Said to the caller (and through it, to the customer) when the rule does not hold; may
    # hold {expression} placeholders over the same names as the rule.
    message: str


class ApprovalSpec(_Spec):
    when: str
    reason: str


class ReadSpec(_Spec):
    # The name the record goes by in the write's expressions.
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    tool: str
    # The read tool's arguments: expressions over the write's arguments, `customer`,
    # earlier reads and (with for_each) `each`.
    arguments: dict[str, str]
    # Read once per distinct value of this list expression; the name then holds a list.
    for_each: str = ""


class RequestSpec(_Spec):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
    # Below the connector's base URL; `{expression}` placeholders are percent-encoded.
    path: str = Field(pattern=r"^/")
    query: dict[str, str] = Field(default_factory=dict)
    # The JSON body: field -> expression.
    body: dict[str, str] = Field(default_factory=dict)


class ToolSpec(_Spec):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    description: str = Field(min_length=1)
    kind: Literal["read", "write"]
    arguments: dict[str, Any]
    request: RequestSpec
    requires_verification: bool = True
    # Identity tools: an expression over `record` giving the customer id the call verifies.
    verifies_identity: str = ""
    # Read tools: an expression over the arguments and `record` giving the customer who owns
    # the record; it must be the verified customer. Required unless shared_record.
    owner: str = ""
    # Read tools whose records belong to no customer (a product catalogue).
    shared_record: bool = False
    # Read tools: the record's id, for citations (an expression over the arguments and `record`).
    record_id: str = ""
    # Paths of the response kept ("status", "items[].item_id"); empty keeps it all.
    keep: list[str] = Field(default_factory=list)
    reads: list[ReadSpec] = Field(default_factory=list)
    ownership: list[CheckSpec] = Field(default_factory=list)
    values: dict[str, str] = Field(default_factory=dict)
    preconditions: list[CheckSpec] = Field(default_factory=list)
    approval: list[ApprovalSpec] = Field(default_factory=list)
    summary: str = ""
    dry_run: bool = False
    timeout_s: float | None = Field(None, gt=0, le=60)


class CatalogSpec(_Spec):
    tenant_id: str
    version: str = Field(min_length=1, max_length=64)
    description: str = ""
    dry_run: bool = False
    connector: ConnectorSpec
    # Argument and result fields the audit trail masks whatever they hold (names, addresses).
    audit_mask_fields: list[str] = Field(default_factory=list)
    tools: list[ToolSpec] = Field(min_length=1)


@dataclass(frozen=True)
class Template:
    """A text with `{expression}` placeholders."""

    text: str
    parts: tuple[str | Expression, ...]

    def render(self, env: Mapping[str, Any], encode: Any = None) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            else:
                value = format_value(part.evaluate(env))
                out.append(encode(value) if encode else value)
        return "".join(out)


@dataclass(frozen=True)
class Read:
    name: str
    tool: str
    arguments: dict[str, Expression]
    for_each: Expression | None


@dataclass(frozen=True)
class Check:
    name: str
    rule: Expression
    # A template over the same names ("Order {order_id} is {order.status}").
    message: Template


@dataclass(frozen=True)
class ApprovalRule:
    when: Expression
    reason: str


@dataclass(frozen=True)
class Tool:
    spec: ToolSpec
    validator: jsonschema.protocols.Validator
    argument_names: frozenset[str]
    path: Template
    query: dict[str, Expression]
    body: dict[str, Expression]
    verifies_identity: Expression | None
    owner: Expression | None
    record_id: Expression | None
    reads: tuple[Read, ...]
    ownership: tuple[Check, ...]
    values: tuple[tuple[str, Expression], ...]
    preconditions: tuple[Check, ...]
    approval: tuple[ApprovalRule, ...]
    summary: Template | None
    dry_run: bool
    timeout_s: float

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def is_write(self) -> bool:
        return self.spec.kind == "write"


@dataclass(frozen=True)
class Connector:
    base_url: str
    scheme: str
    host: str
    port: int
    base_path: str
    allowed_hosts: frozenset[str]
    allowed_private_hosts: frozenset[str]
    auth: AuthSpec | None
    timeout_s: float
    max_response_bytes: int


@dataclass(frozen=True)
class Catalog:
    tenant_id: str
    version: str
    dry_run: bool
    connector: Connector
    tools: dict[str, Tool]
    mask_fields: frozenset[str] = field(default_factory=frozenset)

    def tool(self, name: str) -> Tool | None:
        return self.tools.get(name)


def is_private_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified:
    anything that is not a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not address.is_global or address.is_multicast


def _ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_host_allowed(host: str, connector: Connector | ConnectorSpec) -> str | None:
    """Why a host may not be called, or None (the static check; addresses are checked at call time)."""
    allowed = set(connector.allowed_hosts)
    private = set(connector.allowed_private_hosts)
    if host not in allowed | private:
        return f"host {host!r} is not in the catalog's allow-list"
    literal = _ip_literal(host)
    if literal is not None and is_private_address(literal) and host not in private:
        return f"host {host!r} is a private address and not listed in allowed_private_hosts"
    return None


def _template(text: str, names: Iterable[str]) -> Template:
    parts: list[str | Expression] = []
    position = 0
    for match in _PLACEHOLDER.finditer(text):
        parts.append(text[position : match.start()])
        parts.append(compile_expression(match.group(1), names))
        position = match.end()
    parts.append(text[position:])
    return Template(text=text, parts=tuple(p for p in parts if p != ""))


def _connector(spec: ConnectorSpec, environ: Mapping[str, str]) -> Connector:
    base_url = environ.get(spec.base_url_env, "").strip() if spec.base_url_env else ""
    base_url = base_url or spec.base_url
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise CatalogError(f"connector.base_url {base_url!r} is not an http(s) URL")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise CatalogError("connector.base_url carries no credentials, query or fragment")
    for host in [*spec.allowed_hosts, *spec.allowed_private_hosts]:
        literal = _ip_literal(host)
        if literal is not None and is_private_address(literal) and host not in spec.allowed_private_hosts:
            raise CatalogError(f"allowed_hosts: {host!r} is a private address; list it in allowed_private_hosts")
    problem = check_host_allowed(parts.hostname, spec)
    if problem:
        raise CatalogError(f"connector.base_url: {problem}")
    return Connector(
        base_url=base_url.rstrip("/"),
        scheme=parts.scheme,
        host=parts.hostname,
        port=parts.port or (443 if parts.scheme == "https" else 80),
        base_path=parts.path.rstrip("/"),
        allowed_hosts=frozenset(spec.allowed_hosts),
        allowed_private_hosts=frozenset(spec.allowed_private_hosts),
        auth=spec.auth,
        timeout_s=spec.timeout_s,
        max_response_bytes=spec.max_response_bytes,
    )


def _argument_names(tool: ToolSpec) -> frozenset[str]:
    schema = tool.arguments
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise CatalogError(f"arguments is not a valid JSON Schema: {error.message}") from None
    if schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        raise CatalogError('arguments must be {"type": "object", "additionalProperties": false, ...}')
    names = frozenset(schema.get("properties", {}))
    bad = [name for name in names if not _NAME.match(name)]
    if bad:
        raise CatalogError(f"argument names must be lower_snake_case: {bad}")
    return names


def _compile_tool(tool: ToolSpec, tools: Mapping[str, ToolSpec], connector: Connector, catalog_dry_run: bool) -> Tool:
    arguments = _argument_names(tool)
    if CUSTOMER in arguments or RECORD in arguments or EACH in arguments:
        raise CatalogError(f"argument names {CUSTOMER!r}, {RECORD!r} and {EACH!r} are reserved")
    base = set(arguments) | {CUSTOMER}
    if "://" in tool.request.path or ".." in tool.request.path.split("/"):
        raise CatalogError("request.path is a path below the connector's base URL")

    if tool.kind == "read":
        if tool.reads or tool.ownership or tool.preconditions or tool.approval or tool.values:
            raise CatalogError("read tools declare no reads, checks, values or approval rules")
        if tool.verifies_identity and tool.requires_verification:
            raise CatalogError("an identity tool (verifies_identity) cannot require verification")
        if tool.requires_verification and not tool.verifies_identity and not (tool.owner or tool.shared_record):
            raise CatalogError("a read that needs verification declares its owner (or shared_record: true)")
        if tool.owner and tool.shared_record:
            raise CatalogError("owner and shared_record exclude each other")
    else:
        if not tool.requires_verification or tool.verifies_identity or tool.owner or tool.shared_record:
            raise CatalogError("a write requires verification and declares no owner/verifies_identity")
        if not tool.summary:
            raise CatalogError("a write declares the summary the customer says yes to")
        owned_reads = [r for r in tool.reads if tools.get(r.tool) is not None and tools[r.tool].owner]
        if not tool.ownership and not owned_reads:
            raise CatalogError("a write checks ownership: an ownership rule or a read of an owned record")

    names = set(base)
    reads: list[Read] = []
    for read in tool.reads:
        target = tools.get(read.tool)
        if target is None or target.kind != "read" or target.verifies_identity:
            raise CatalogError(f"reads: {read.tool!r} is not a read tool of this catalog")
        if read.name in names:
            raise CatalogError(f"reads: the name {read.name!r} is already taken")
        for_each = compile_expression(read.for_each, names) if read.for_each else None
        scope = names | ({EACH} if for_each else set())
        missing = set(target.arguments.get("required", [])) - set(read.arguments)
        if missing:
            raise CatalogError(f"reads: {read.tool} needs {sorted(missing)}")
        reads.append(
            Read(
                name=read.name,
                tool=read.tool,
                arguments={key: compile_expression(value, scope) for key, value in read.arguments.items()},
                for_each=for_each,
            )
        )
        names.add(read.name)
    ownership = tuple(Check(c.name, compile_expression(c.rule, names), _template(c.message, names))
                      for c in tool.ownership)
    values: list[tuple[str, Expression]] = []
    for name, source in tool.values.items():
        if name in names or not _NAME.match(name):
            raise CatalogError(f"values: {name!r} is taken or not lower_snake_case")
        values.append((name, compile_expression(source, names)))
        names.add(name)
    record_scope = set(arguments) | {RECORD}
    return Tool(
        spec=tool,
        validator=jsonschema.Draft202012Validator(tool.arguments),
        argument_names=arguments,
        path=_template(tool.request.path, base),
        query={key: compile_expression(value, base) for key, value in tool.request.query.items()},
        body={key: compile_expression(value, base) for key, value in tool.request.body.items()},
        verifies_identity=compile_expression(tool.verifies_identity, record_scope) if tool.verifies_identity else None,
        owner=compile_expression(tool.owner, record_scope) if tool.owner else None,
        record_id=compile_expression(tool.record_id, record_scope) if tool.record_id else None,
        reads=tuple(reads),
        ownership=ownership,
        values=tuple(values),
        preconditions=tuple(
            Check(c.name, compile_expression(c.rule, names), _template(c.message, names)) for c in tool.preconditions
        ),
        approval=tuple(ApprovalRule(compile_expression(a.when, names), a.reason) for a in tool.approval),
        summary=_template(tool.summary, names) if tool.summary else None,
        dry_run=catalog_dry_run or tool.dry_run,
        timeout_s=tool.timeout_s or connector.timeout_s,
    )


def parse_catalog(raw: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> Catalog:
    """A catalog from its JSON object; CatalogError says what is wrong."""
    try:
        spec = CatalogSpec.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CatalogError(problems) from None
    if not is_id(spec.tenant_id):
        raise CatalogError(f"tenant_id {spec.tenant_id!r} is not an id")
    connector = _connector(spec.connector, os.environ if environ is None else environ)
    specs: dict[str, ToolSpec] = {}
    for tool in spec.tools:
        if tool.name in specs:
            raise CatalogError(f"tool {tool.name!r} is declared twice")
        specs[tool.name] = tool
    tools: dict[str, Tool] = {}
    for tool in spec.tools:
        try:
            tools[tool.name] = _compile_tool(tool, specs, connector, spec.dry_run)
        except (CatalogError, ExpressionError) as error:
            raise CatalogError(f"tool {tool.name}: {error}") from None
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return Catalog(
        tenant_id=spec.tenant_id,
        version=f"{spec.version}+{digest[:12]}",
        dry_run=spec.dry_run,
        connector=connector,
        tools=tools,
        mask_fields=frozenset(spec.audit_mask_fields),
    )


def load_catalogs(directory: Path, *, environ: Mapping[str, str] | None = None) -> dict[str, Catalog]:
    """Every `<tenant>.json` of a folder; the file name is the tenant id."""
    catalogs: dict[str, Catalog] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            catalog = parse_catalog(raw, environ=environ)
        except (OSError, json.JSONDecodeError, CatalogError) as error:
            raise CatalogError(f"{path}: {error}") from None
        if catalog.tenant_id != path.stem:
            raise CatalogError(f"{path}: tenant_id {catalog.tenant_id!r} differs from the file name")
        catalogs[catalog.tenant_id] = catalog
    return catalogs
