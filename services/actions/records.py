"""Reading the company's records for a tool, and the checks that run over them:
ownership (only the verified customer's own records), the catalog's
preconditions, approval rules and the summary's facts.

Every check fails closed: a rule that cannot be evaluated (a missing field, a
None where a number was expected) does not hold, and an approval rule that
cannot be evaluated requires approval.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from servicekit import pii
from servicekit.errors import ApiError, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.actions.catalog import CUSTOMER, EACH, RECORD, Catalog, Check, Tool
from services.actions.connector import ConnectorError, HttpCall, HttpConnector
from services.actions.errors import PermissionDenied, PreconditionsFailed
from services.actions.expressions import Expression, ExpressionError

# A write reads at most this many records of one kind (e.g. the products of an order's items).
MAX_FOR_EACH = 50
MAX_ARGUMENTS_BYTES = 64 * 1024
MASKED = "[masked]"


def parse_arguments(tool: Tool, arguments_json: str, field_path: str = "arguments_json") -> dict[str, Any]:
    """The arguments object, checked against the tool's JSON Schema (every problem at once)."""
    if len(arguments_json.encode()) > MAX_ARGUMENTS_BYTES:
        raise InvalidArgument([(field_path, f"at most {MAX_ARGUMENTS_BYTES} bytes")])
    try:
        arguments = json.loads(arguments_json or "{}")
    except ValueError as error:
        raise InvalidArgument([(field_path, f"not JSON: {error}")]) from None
    if not isinstance(arguments, dict):
        raise InvalidArgument([(field_path, "must be a JSON object")])
    problems = sorted(tool.validator.iter_errors(arguments), key=lambda e: [str(p) for p in e.absolute_path])
    if problems:
        raise InvalidArgument(
            [
                (".".join([field_path, *(str(p) for p in problem.absolute_path)]), problem.message)
                for problem in problems
            ],
            reason="ARGUMENTS_INVALID",
        )
    return arguments


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def project(value: Any, paths: list[str]) -> Any:
    """Only the listed paths of a JSON value: "a.b", "items[].price", "methods.*.source"."""
    if not paths:
        return value
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            node = node.setdefault(part, {})
    return _apply(tree, value)


def _apply(tree: dict[str, Any], value: Any) -> Any:
    if not tree:
        return value
    if not isinstance(value, dict):
        return None
    out: dict[str, Any] = {}
    for key, sub in tree.items():
        if key == "*":
            for name, item in value.items():
                out[name] = _apply(sub, item)
            continue
        name = key.removesuffix("[]")
        if name not in value:
            continue
        item = value[name]
        if key.endswith("[]") and isinstance(item, list):
            out[name] = [_apply(sub, x) for x in item]
        else:
            out[name] = _apply(sub, item)
    return out


def mask_value(value: Any, fields: frozenset[str]) -> Any:
    """Personal data masked for the audit trail: the catalog's fields whatever they hold,
    and emails, phone and card numbers anywhere."""
    if isinstance(value, dict):
        return {k: MASKED if k in fields and v not in (None, "") else mask_value(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(item, fields) for item in value]
    if isinstance(value, str):
        return pii.mask(value)
    return value


def masked_json(value: Any, fields: frozenset[str]) -> str:
    return "" if value is None else canonical_json(mask_value(value, fields))


def connector_failure(error: ConnectorError, tool: str) -> ApiError:
    """A read that did not give a record, as the caller hears it."""
    metadata = {"tool": tool}
    if error.reason == "CONNECTOR_NOT_FOUND":
        return NotFound(f"{tool}: {error.message}", reason="RECORD_NOT_FOUND", metadata=metadata)
    if error.transient:
        return Unavailable(
            f"the company's system is unavailable ({error.message}); nothing was changed, retry later",
            reason=error.reason,
            metadata=metadata,
        )
    return FailedPrecondition(f"{tool}: {error.message}", reason=error.reason, metadata=metadata)


def base_env(tool: Tool, arguments: Mapping[str, Any], customer_id: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {name: arguments.get(name) for name in tool.argument_names}
    env[CUSTOMER] = {"id": customer_id}
    return env


def _path_segment(value: str) -> str:
    # Percent-encoding keeps '/', '?' and '#' inside the segment; '.' and '..' would still
    # move the path, so they are refused.
    if value in {"", ".", ".."}:
        raise InvalidArgument([("arguments_json", f"{value!r} cannot name a record")])
    return quote(value, safe="")


def build_call(tool: Tool, env: Mapping[str, Any], idempotency_key: str | None = None) -> HttpCall:
    try:
        path = tool.path.render(env, _path_segment)
        query = {key: expression.evaluate(env) for key, expression in tool.query.items()}
        body = {key: expression.evaluate(env) for key, expression in tool.body.items()} if tool.body else None
    except ExpressionError as error:
        raise FailedPrecondition(f"{tool.name}: cannot build the request: {error}", reason="CATALOG_ERROR") from None
    return HttpCall(
        method=tool.spec.request.method,
        path=path,
        query={key: str(value) for key, value in query.items() if value is not None},
        body=body,
        timeout_s=tool.timeout_s,
        idempotency_key=idempotency_key,
    )


def _owned(owner: Expression, env: Mapping[str, Any], customer_id: str) -> bool:
    try:
        return bool(owner.evaluate(env) == customer_id)
    except ExpressionError:
        return False


@dataclass(frozen=True)
class Fetched:
    record: Any
    record_id: str


class Records:
    def __init__(self, connector: HttpConnector) -> None:
        self._connector = connector

    async def fetch(
        self, catalog: Catalog, tool: Tool, arguments: Mapping[str, Any], customer_id: str | None
    ) -> Fetched:
        """Run a read tool; the record must be the verified customer's when the tool has an owner."""
        env = dict(arguments)
        owner = tool.owner
        if owner is not None and customer_id is None:
            raise FailedPrecondition(
                f"{tool.name} needs the customer's identity verified first", reason="IDENTITY_NOT_VERIFIED"
            )
        if owner is not None and RECORD not in owner.names and not _owned(owner, env, str(customer_id)):
            # Whose record it is can be told from the arguments: refused before any call.
            raise PermissionDenied(f"{tool.name}: not the verified customer's record", reason="NOT_CUSTOMERS_RECORD")
        try:
            outcome = await self._connector.send(catalog.connector, build_call(tool, base_env(tool, arguments, None)))
        except ConnectorError as error:
            raise connector_failure(error, tool.name) from None
        if outcome.truncated:
            raise FailedPrecondition(
                f"{tool.name}: the record is larger than the catalog's response cap", reason="RESPONSE_TOO_LARGE"
            )
        if outcome.body is None:
            raise FailedPrecondition(f"{tool.name}: the company's system returned no record", reason="NO_RECORD")
        env[RECORD] = outcome.body
        if owner is not None and not _owned(owner, env, str(customer_id)):
            raise PermissionDenied(f"{tool.name}: not the verified customer's record", reason="NOT_CUSTOMERS_RECORD")
        record_id = ""
        if tool.record_id is not None:
            try:
                record_id = str(tool.record_id.evaluate(env) or "")
            except ExpressionError:
                record_id = ""
        return Fetched(record=outcome.body, record_id=record_id)

    async def gather(
        self, catalog: Catalog, tool: Tool, arguments: Mapping[str, Any], customer_id: str
    ) -> dict[str, Any]:
        """Everything a write's checks see: arguments, customer, the records it reads,
        computed values. Raises PermissionDenied or PreconditionsFailed."""
        env = base_env(tool, arguments, customer_id)
        for read in tool.reads:
            target = catalog.tools[read.tool]
            try:
                if read.for_each is None:
                    env[read.name] = await self._read_one(catalog, target, read.arguments, env, customer_id)
                    continue
                items = read.for_each.evaluate(env)
            except ExpressionError as error:
                raise PreconditionsFailed(tool.name, [(read.name, f"cannot read {read.name}: {error}")]) from None
            if not isinstance(items, list):
                raise PreconditionsFailed(tool.name, [(read.name, f"cannot read {read.name}: not a list")])
            distinct = list(dict.fromkeys(json.dumps(item, sort_keys=True) for item in items))
            if len(distinct) > MAX_FOR_EACH:
                raise PreconditionsFailed(tool.name, [(read.name, f"more than {MAX_FOR_EACH} {read.name} to read")])
            records = []
            for item in distinct:
                scope = {**env, EACH: json.loads(item)}
                try:
                    records.append(await self._read_one(catalog, target, read.arguments, scope, customer_id))
                except ExpressionError as error:
                    raise PreconditionsFailed(tool.name, [(read.name, f"cannot read {read.name}: {error}")]) from None
            env[read.name] = records
        failed_ownership = [(c.name, describe(c, env)) for c in tool.ownership if not _holds(c.rule, env)]
        if failed_ownership:
            raise PermissionDenied(
                f"{tool.name}: {'; '.join(message for _, message in failed_ownership)}",
                reason="NOT_CUSTOMERS_RECORD",
                metadata={"tool": tool.name, "checks": ",".join(name for name, _ in failed_ownership)},
            )
        for name, expression in tool.values:
            try:
                env[name] = expression.evaluate(env)
            except ExpressionError:
                env[name] = None
        failed = [(c.name, describe(c, env)) for c in tool.preconditions if not _holds(c.rule, env)]
        if failed:
            raise PreconditionsFailed(tool.name, failed)
        return env

    async def _read_one(
        self,
        catalog: Catalog,
        target: Tool,
        argument_expressions: Mapping[str, Expression],
        env: Mapping[str, Any],
        customer_id: str,
    ) -> Any:
        arguments = {key: expression.evaluate(env) for key, expression in argument_expressions.items()}
        # The values come from the model's arguments: they pass the read tool's own schema too.
        parse_arguments(target, json.dumps(arguments), field_path=f"arguments_json({target.name})")
        return (await self.fetch(catalog, target, arguments, customer_id)).record


def _holds(rule: Expression, env: Mapping[str, Any]) -> bool:
    try:
        return rule.holds(env)
    except ExpressionError:
        return False


def describe(check: Check, env: Mapping[str, Any]) -> str:
    """A failed check's message with its facts, or (when a fact is missing) without them."""
    try:
        return check.message.render(env)
    except ExpressionError:
        return "".join(part if isinstance(part, str) else "?" for part in check.message.parts)


def approval_reasons(tool: Tool, env: Mapping[str, Any]) -> list[str]:
    """The approval rules that match (or cannot be evaluated: approval, to be safe)."""
    reasons = []
    for rule in tool.approval:
        try:
            matched = rule.when.holds(env)
        except ExpressionError:
            matched = True
        if matched:
            reasons.append(rule.reason)
    return reasons


def summary(tool: Tool, env: Mapping[str, Any]) -> str:
    assert tool.summary is not None
    try:
        return tool.summary.render(env)
    except ExpressionError as error:
        raise FailedPrecondition(f"{tool.name}: cannot describe the action: {error}", reason="CATALOG_ERROR") from None
