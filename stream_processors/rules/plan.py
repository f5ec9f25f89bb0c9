"""Conditions of the rule language, and the questions an event is asked, compiled to closures.

A pack's conditions (stream_processors/rules/pack.py parses them, macros already expanded) are
trees of four kinds: a named predicate (``Test``), a field's value in a set (``In``), and the
combinators ``Not`` and ``AnyOf``/``AllOf``. ``groups`` turns the cases of one event type into
a tree of questions: a case asks its ``when``'s conditions one after the other, then that its
``unless`` does not hold, and cases that begin alike share those first questions (both packs'
copies of a rule share all of them). Each question is compiled to a closure over what it reads
(the predicate's function, the field's getter, the set), so judging an event resolves no name,
looks nothing up in the pack, and answers each shared question once.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from stream_processors.rules.predicates import PREDICATES, Context

Check = Callable[[Context], bool]


@dataclass(frozen=True)
class Test:
    """A named predicate (stream_processors/rules/predicates.py)."""

    name: str


@dataclass(frozen=True)
class In:
    """The event's field (or the device's registered fact, ``device.NAME``) is one of
    ``values``; for a list field, any item is (``every``: each item is)."""

    field: str
    values: frozenset[Any]
    every: bool = False
    ignore_case: bool = False
    is_list: bool = False  # the field holds a list (known from the contract's types)


@dataclass(frozen=True)
class Not:
    of: "Condition"


@dataclass(frozen=True)
class AnyOf:
    of: tuple["Condition", ...]


@dataclass(frozen=True)
class AllOf:
    of: tuple["Condition", ...]


Condition = Test | In | Not | AnyOf | AllOf
TRUE = AllOf(())
FALSE = AnyOf(())


def names(condition: Condition) -> Iterable[str]:
    """The named predicates a condition uses."""
    if isinstance(condition, Test):
        yield condition.name
    elif isinstance(condition, Not):
        yield from names(condition.of)
    elif isinstance(condition, AnyOf | AllOf):
        for part in condition.of:
            yield from names(part)


def waits(condition: Condition) -> bool:
    """It asks about an absence (a consent, a registration): decided after the grace period."""
    return any(PREDICATES[name].waits for name in names(condition))


def about_registration(condition: Condition) -> bool:
    """It asks whether the device is registered: the question left when it is still not."""
    return any(PREDICATES[name].about_registration for name in names(condition))


def per_pack(condition: Condition) -> bool:
    """It reads its pack's name or parameters, so its answer is not shared with other packs."""
    return any(PREDICATES[name].per_pack for name in names(condition))


def compile_condition(condition: Condition) -> Check:
    if isinstance(condition, Test):
        return PREDICATES[condition.name].test
    if isinstance(condition, In):
        return _compile_in(condition)
    if isinstance(condition, Not):
        if isinstance(condition.of, Not):
            return compile_condition(condition.of.of)
        inner = compile_condition(condition.of)
        return lambda ctx: not inner(ctx)
    parts = tuple(compile_condition(part) for part in condition.of)
    if len(parts) == 1:
        return parts[0]
    if isinstance(condition, AllOf):
        return _all(parts)
    return _any(parts)


# Unrolled for the common sizes: a call per part, and no loop or generator, on the per-event path.
def _all(parts: tuple[Check, ...]) -> Check:
    if not parts:
        return lambda ctx: True
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) and b(ctx)
    if len(parts) == 3:
        a, b, c = parts
        return lambda ctx: a(ctx) and b(ctx) and c(ctx)

    def every(ctx: Context) -> bool:
        for part in parts:  # noqa: SIM110
            if not part(ctx):
                return False
        return True

    return every


def _any(parts: tuple[Check, ...]) -> Check:
    if not parts:
        return lambda ctx: False
    if len(parts) == 2:
        a, b = parts
        return lambda ctx: a(ctx) or b(ctx)

    def some(ctx: Context) -> bool:
        for part in parts:  # noqa: SIM110
            if part(ctx):
                return True
        return False

    return some


def _compile_in(test: In) -> Check:
    values = test.values
    read = _reader(test.field)
    if not test.is_list:
        if test.ignore_case:
            return lambda ctx: _lower(read(ctx)) in values
        return lambda ctx: read(ctx) in values
    fold = _lower if test.ignore_case else _same
    if test.every:
        return lambda ctx: all(fold(item) in values for item in read(ctx) or ())
    return lambda ctx: any(fold(item) in values for item in read(ctx) or ())


def _reader(field: str) -> Callable[[Context], Any]:
    if field.startswith("device."):
        fact = field.removeprefix("device.")

        def device_fact(ctx: Context) -> Any:
            device = ctx.device
            return device.facts[fact] if device is not None else None

        return device_fact
    get = attrgetter(field)
    return lambda ctx: get(ctx.event)


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _same(value: Any) -> Any:
    return value


Fire = Callable[[Context, list[Any]], None]  # adds the entries whose cases hold to the list


@dataclass(frozen=True)
class Group:
    """Cases whose questions begin alike, asked of an event once: a question shared by several
    cases (both packs share most rules; one event type's cases often begin alike, has_subject,
    a consent basis) is answered once, and a false one skips every case behind it. A case whose
    predicates read its pack (a filing threshold) is grouped only within it."""

    pack: Any  # the pack the questions read (its Context's), None if they read none
    fire: Fire
    entries: tuple[Any, ...]  # the engine's entries it may fire: each has a .pack and a .case


@dataclass
class _Node:
    """A question in the tree of an event type's questions: the cases that fire when it and
    every question above it hold, and the questions asked next."""

    entries: list[Any]
    next: "dict[Condition, _Node]"


def groups(entries: Iterable[Any]) -> tuple[Group, ...]:
    """The questions asked of an event, for ``entries`` in the packs' order (each a case)."""
    scopes: dict[Any, _Node] = {}
    packs: dict[Any, Any] = {}
    for entry in entries:
        case = entry.case
        scope = entry.pack.name if case.per_pack else None
        packs.setdefault(scope, entry.pack)
        node = scopes.setdefault(scope, _Node([], {}))
        for question in _conjuncts(case.when, case.unless):
            node = node.next.setdefault(question, _Node([], {}))
        node.entries.append(entry)
    found: list[Group] = []
    for scope, root in scopes.items():
        pack = packs[scope] if scope is not None else None
        if root.entries:  # cases that always hold
            found.append(Group(pack, _compile_node(TRUE, _Node(root.entries, {})), tuple(root.entries)))
        for question, node in root.next.items():
            found.append(Group(pack, _compile_node(question, node), tuple(_under(node))))
    return tuple(found)


def _conjuncts(when: Condition, unless: Condition) -> tuple[Condition, ...]:
    """The questions a case asks one after the other: ``when``'s, then that ``unless`` fails."""
    asked = when.of if isinstance(when, AllOf) else (when,)
    return asked if unless == FALSE else (*asked, Not(unless))


def _under(node: _Node) -> Iterable[Any]:
    yield from node.entries
    for child in node.next.values():
        yield from _under(child)


def _compile_node(question: Condition, node: _Node) -> Fire:
    holds = compile_condition(question)
    entries = tuple(node.entries)
    after = tuple(_compile_node(q, n) for q, n in node.next.items())
    if not after:

        def last(ctx: Context, out: list[Any]) -> None:
            if holds(ctx):
                out.extend(entries)

        return last
    if len(after) == 1 and not entries:
        (then,) = after

        def chain(ctx: Context, out: list[Any]) -> None:
            if holds(ctx):
                then(ctx, out)

        return chain

    def branch(ctx: Context, out: list[Any]) -> None:
        if holds(ctx):
            out.extend(entries)
            for then in after:
                then(ctx, out)

    return branch
