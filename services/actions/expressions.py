"""The catalog's small expression language: preconditions, ownership checks,
approval rules, computed values and summary placeholders.

The syntax is a subset of Python expressions, parsed with `ast` and evaluated
by the interpreter below over JSON values only; nothing is ever handed to
`eval` or `compile`. What a catalog author can write:

- literals (strings, numbers, true/false as True/False, None, lists, tuples);
- names: the tool's arguments, `customer` ({"id": ...}), the records it read,
  its computed values, comprehension variables;
- `a.b` and `a["b"]` read a key of a JSON object (a missing key is None), `a[0]`
  an element of a list;
- comparisons (== != < <= > >= in, not in), and / or / not, `x if c else y`,
  + - * / on numbers, + on strings;
- list comprehensions and generator expressions (`all(i in ids for i in item_ids)`);
- the functions in FUNCTIONS, and nothing else: no attributes of Python objects,
  no method calls, no imports, no lambdas, no `**`.

Evaluation is bounded (a step budget) and any error (a None compared with a
number, a missing function argument) raises ExpressionError: callers fail
closed (a precondition that cannot be evaluated does not hold; an approval rule
that cannot be evaluated requires approval).
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_SOURCE_CHARS = 2_000
MAX_NODES = 400
MAX_STEPS = 200_000
MAX_STRING_CHARS = 10_000


class ExpressionError(ValueError):
    """An expression that is not in the language, or that failed to evaluate."""


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _numbers(values: Any, name: str) -> list[float]:
    items = list(_iterable(values, name))
    if not all(_number(item) for item in items):
        raise ExpressionError(f"{name}() needs numbers")
    return items


def _iterable(value: Any, name: str) -> Iterable[Any]:
    if isinstance(value, list | tuple):
        return value
    if isinstance(value, dict):
        return list(value)
    raise ExpressionError(f"{name}() needs a list")


def _len(value: Any) -> int:
    if isinstance(value, str | list | tuple | dict):
        return len(value)
    raise ExpressionError("len() needs a string, a list or an object")


def _round(value: Any, digits: Any = 0) -> float:
    if not _number(value) or not isinstance(digits, int):
        raise ExpressionError("round() needs a number")
    return round(float(value), digits)


def _money(value: Any) -> str:
    if not _number(value):
        raise ExpressionError("money() needs a number")
    sign = "-" if value < 0 else ""
    return f"{sign}${abs(value):,.2f}"


def _join(values: Any, separator: Any = ", ") -> str:
    if not isinstance(separator, str):
        raise ExpressionError("join() needs a string separator")
    return separator.join(format_value(item) for item in _iterable(values, "join"))


def _values(value: Any) -> list[Any]:
    if not isinstance(value, dict):
        raise ExpressionError("values() needs an object")
    return list(value.values())


def _keys(value: Any) -> list[Any]:
    if not isinstance(value, dict):
        raise ExpressionError("keys() needs an object")
    return list(value)


def _unique(values: Any) -> list[Any]:
    seen: list[Any] = []
    for item in _iterable(values, "unique"):
        if item not in seen:
            seen.append(item)
    return seen


def _lower(value: Any) -> str:
    if not isinstance(value, str):
        raise ExpressionError("lower() needs a string")
    return value.lower()


def _zip(*lists: Any) -> list[tuple[Any, ...]]:
    return list(zip(*(_iterable(item, "zip") for item in lists), strict=False))


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": _len,
    "sum": lambda values: sum(_numbers(values, "sum")),
    "min": lambda values: min(_numbers(values, "min")),
    "max": lambda values: max(_numbers(values, "max")),
    "abs": lambda value: abs(_numbers([value], "abs")[0]),
    "round": _round,
    "all": lambda values: all(_iterable(values, "all")),
    "any": lambda values: any(_iterable(values, "any")),
    "zip": _zip,
    "keys": _keys,
    "values": _values,
    "unique": _unique,
    "lower": _lower,
    "join": _join,
    "money": _money,
}

_ALLOWED = (
    ast.Expression, ast.Constant, ast.Name, ast.Load, ast.Store, ast.Attribute, ast.Subscript,
    ast.List, ast.Tuple, ast.Compare, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.IfExp, ast.Call,
    ast.ListComp, ast.GeneratorExp, ast.comprehension,
    ast.And, ast.Or, ast.Not, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.Div,
    ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn,
)  # fmt: skip


def format_value(value: Any) -> str:
    """How a value reads in a summary: 2 decimals for fractions, lists joined."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(format_value(item) for item in value)
    if value is None:
        return ""
    return str(value)


@dataclass
class _Budget:
    steps: int = 0

    def spend(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise ExpressionError("expression too costly to evaluate")


@dataclass(frozen=True)
class Expression:
    """One compiled expression; `evaluate` it over a mapping of names to JSON values."""

    source: str
    tree: ast.Expression = field(repr=False)
    names: frozenset[str]

    def evaluate(self, env: Mapping[str, Any]) -> Any:
        return _Interpreter(env).eval(self.tree.body)

    def holds(self, env: Mapping[str, Any]) -> bool:
        """Whether a check is true; a value that is not a boolean is an error (fail closed)."""
        value = self.evaluate(env)
        if not isinstance(value, bool):
            raise ExpressionError(f"{self.source!r} gave {type(value).__name__}, not true or false")
        return value


def compile_expression(source: str, known_names: Iterable[str] | None = None) -> Expression:
    """Parse and check an expression; `known_names` (when given) are the only free
    names it may use, so a typo fails when the catalog loads, not when it runs."""
    if not source.strip():
        raise ExpressionError("empty expression")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(f"expression longer than {MAX_SOURCE_CHARS} characters")
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as error:
        raise ExpressionError(f"{source!r}: {error.msg}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"{source!r} is too long")
    bound: set[str] = set()
    loaded: set[str] = set()
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            raise ExpressionError(f"{source!r}: {type(node).__name__} is not allowed")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
                raise ExpressionError(f"{source!r}: only the functions {sorted(FUNCTIONS)} may be called")
            if node.keywords:
                raise ExpressionError(f"{source!r}: keyword arguments are not allowed")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"{source!r}: names starting with '_' are not allowed")
        if isinstance(node, ast.comprehension) and node.is_async:
            raise ExpressionError(f"{source!r}: async comprehensions are not allowed")
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise ExpressionError(f"{source!r}: names starting with '_' are not allowed")
            (bound if isinstance(node.ctx, ast.Store) else loaded).add(node.id)
    calls = {n.func.id for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    free = loaded - bound - calls
    if known_names is not None:
        unknown = free - set(known_names)
        if unknown:
            raise ExpressionError(f"{source!r} uses unknown names: {', '.join(sorted(unknown))}")
    return Expression(source=source, tree=tree, names=frozenset(free))


class _Interpreter:
    def __init__(self, env: Mapping[str, Any]) -> None:
        self._scopes: list[Mapping[str, Any]] = [env]
        self._budget = _Budget()

    def _lookup(self, name: str) -> Any:
        for scope in reversed(self._scopes):
            if name in scope:
                return scope[name]
        raise ExpressionError(f"unknown name {name!r}")

    def eval(self, node: ast.expr) -> Any:
        self._budget.spend()
        match node:
            case ast.Constant(value=value):
                if value is not None and not isinstance(value, str | int | float | bool):
                    raise ExpressionError("only strings, numbers, booleans and None are literals")
                return value
            case ast.Name(id=name):
                return self._lookup(name)
            case ast.Attribute(value=inner, attr=key):
                return _get(self.eval(inner), key)
            case ast.Subscript(value=inner, slice=index):
                return _get(self.eval(inner), self.eval(index))
            case ast.List(elts=elements) | ast.Tuple(elts=elements):
                return [self.eval(element) for element in elements]
            case ast.BoolOp(op=op, values=operands):
                result: Any = None
                for operand in operands:
                    result = self.eval(operand)
                    if not isinstance(result, bool):
                        raise ExpressionError("and/or need true or false on both sides")
                    if isinstance(op, ast.And) != result:
                        return result
                return result
            case ast.UnaryOp(op=ast.Not(), operand=operand):
                value = self.eval(operand)
                if not isinstance(value, bool):
                    raise ExpressionError("not needs true or false")
                return not value
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                value = self.eval(operand)
                if not _number(value):
                    raise ExpressionError("- needs a number")
                return -value
            case ast.BinOp(left=left, op=operator, right=right):
                return _arithmetic(operator, self.eval(left), self.eval(right))
            case ast.Compare(left=left, ops=comparisons, comparators=comparators):
                current = self.eval(left)
                for comparison, comparator in zip(comparisons, comparators, strict=True):
                    other = self.eval(comparator)
                    if not _compare(comparison, current, other):
                        return False
                    current = other
                return True
            case ast.IfExp(test=test, body=body, orelse=orelse):
                condition = self.eval(test)
                if not isinstance(condition, bool):
                    raise ExpressionError("a condition must be true or false")
                return self.eval(body if condition else orelse)
            case ast.Call(func=ast.Name(id=name), args=arguments):
                values = [self.eval(argument) for argument in arguments]
                try:
                    return FUNCTIONS[name](*values)
                except TypeError:
                    raise ExpressionError(f"{name}() got the wrong number of arguments") from None
            case ast.ListComp(elt=element, generators=generators) | ast.GeneratorExp(
                elt=element, generators=generators
            ):
                return list(self._comprehension(element, generators, 0))
        raise ExpressionError(f"{type(node).__name__} is not allowed")

    def _comprehension(self, element: ast.expr, generators: list[ast.comprehension], depth: int) -> Iterable[Any]:
        generator = generators[depth]
        for item in _iterable(self.eval(generator.iter), "for"):
            self._budget.spend()
            scope = _bind(generator.target, item)
            self._scopes.append(scope)
            try:
                conditions = [self.eval(condition) for condition in generator.ifs]
                if not all(isinstance(c, bool) for c in conditions):
                    raise ExpressionError("an if in a comprehension must be true or false")
                if all(conditions):
                    if depth + 1 < len(generators):
                        yield from list(self._comprehension(element, generators, depth + 1))
                    else:
                        yield self.eval(element)
            finally:
                self._scopes.pop()


def _bind(target: ast.expr, value: Any) -> dict[str, Any]:
    if isinstance(target, ast.Name):
        return {target.id: value}
    if isinstance(target, ast.Tuple) and all(isinstance(e, ast.Name) for e in target.elts):
        if not isinstance(value, list | tuple) or len(value) != len(target.elts):
            raise ExpressionError("cannot unpack")
        return {e.id: v for e, v in zip(target.elts, value, strict=True)}  # type: ignore[attr-defined]
    raise ExpressionError("a comprehension binds names or a tuple of names")


def _get(container: Any, key: Any) -> Any:
    if isinstance(container, dict):
        if not isinstance(key, str):
            raise ExpressionError("object keys are strings")
        return container.get(key)
    if isinstance(container, list | tuple):
        if not isinstance(key, int) or isinstance(key, bool):
            raise ExpressionError("list indexes are integers")
        return container[key] if -len(container) <= key < len(container) else None
    if container is None:
        return None
    raise ExpressionError(f"cannot read {key!r} of a {type(container).__name__}")


def _arithmetic(op: ast.operator, left: Any, right: Any) -> Any:
    if isinstance(op, ast.Add) and isinstance(left, str) and isinstance(right, str):
        if len(left) + len(right) > MAX_STRING_CHARS:
            raise ExpressionError(f"strings longer than {MAX_STRING_CHARS} characters")
        return left + right
    if not (_number(left) and _number(right)):
        raise ExpressionError("arithmetic needs numbers (or + on two strings)")
    if isinstance(op, ast.Add):
        result = left + right
    elif isinstance(op, ast.Sub):
        result = left - right
    elif isinstance(op, ast.Mult):
        result = left * right
    elif isinstance(op, ast.Div):
        if right == 0:
            raise ExpressionError("division by zero")
        result = left / right
    else:
        raise ExpressionError("only + - * / are allowed")
    if isinstance(result, float) and not math.isfinite(result):
        raise ExpressionError("not a finite number")
    return result


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return bool(left == right)
    if isinstance(op, ast.NotEq):
        return bool(left != right)
    if isinstance(op, ast.In | ast.NotIn):
        if isinstance(right, str):
            if not isinstance(left, str):
                raise ExpressionError("'in' a string needs a string")
            found = left in right
        elif isinstance(right, list | tuple | dict):
            found = left in right
        elif right is None:
            found = False
        else:
            raise ExpressionError("'in' needs a list, an object or a string")
        return found if isinstance(op, ast.In) else not found
    ordered = (_number(left) and _number(right)) or (isinstance(left, str) and isinstance(right, str))
    if not ordered:
        raise ExpressionError("< <= > >= compare two numbers or two strings")
    if isinstance(op, ast.Lt):
        return bool(left < right)
    if isinstance(op, ast.LtE):
        return bool(left <= right)
    if isinstance(op, ast.Gt):
        return bool(left > right)
    if isinstance(op, ast.GtE):
        return bool(left >= right)
    raise ExpressionError("unknown comparison")
