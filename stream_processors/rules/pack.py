"""Policy packs: rules as data (stream_processors/packs/*.yaml), loaded, checked and hashed.

A pack names its lists, parameters and macros, and its rules. A rule has one or more cases,
each the event types it judges (``events``), a condition that must hold (``when``), exceptions
(``unless``: conditions any of which stops it) and an explanation template; a rule's own
``unless`` applies to every case. A condition is:

- a name: a predicate (stream_processors/rules/predicates.py) or a macro of the pack;
- ``{in: {field: F, values: V}}``: the event's field F (``device.F``: the device's registered
  fact) is one of V, a list or a list's name; for a list field, any of its items is (with
  ``every: true``, each is); ``ignore_case: true`` compares strings in lower case;
- ``{not: C}``, ``{any: [C, ...]}``, ``{all: [C, ...]}``, nested at will; a list where one
  condition is expected means ``all`` (the list an ``unless`` holds: ``any``).

A list item "@name" includes another list, so a deployment fills the empty ``deployment_*``
lists (an extensions file) without editing a rule.

``extends: BASE`` merges a pack into its base. Lists, parameters and macros merge by name, the
child's replacing the base's, and the base's rules use the merged ones. Rules merge by id: a new
id is added; for a base rule, each key the child gives (title, severity, reference, tags,
unless, enabled) replaces the base's, and its cases are changed by ``cases`` (a list replaces
them all; a mapping from case number, 1 first, to keys replaces those keys of that case only)
and ``append_cases`` (a list added after them). ``remove: [ID, ...]`` drops base rules.

The engine compiles the cases of each event type to closures (stream_processors/rules/plan.py).
"""

import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import msgspec
import yaml

from contracts.events import EVENT_CLASSES, DeviceRegistered
from contracts.vocabulary import Severity
from stream_processors.rules.facts import DEVICE_FACTS
from stream_processors.rules.plan import (
    FALSE,
    AllOf,
    AnyOf,
    Condition,
    In,
    Not,
    Test,
    about_registration,
    per_pack,
    waits,
)
from stream_processors.rules.predicates import PREDICATES

PACKS_DIR = Path(__file__).parent.parent / "packs"
SEVERITIES = set(get_args(Severity))
_FIELDS = {cls.__struct_config__.tag: set(cls.__struct_fields__) for cls in EVENT_CLASSES}


def _list_fields(cls: Any) -> set[str]:
    return {
        f.name
        for f in msgspec.structs.fields(cls)
        if isinstance(msgspec.inspect.type_info(f.type), msgspec.inspect.ListType)
    }


_LIST_FIELDS = {cls.__struct_config__.tag: _list_fields(cls) for cls in EVENT_CLASSES}
_DEVICE_LIST_FACTS = _list_fields(DeviceRegistered) & set(DEVICE_FACTS)


class PackError(ValueError):
    """A pack that cannot be used; the message names the file, the rule and the case."""


@dataclass(frozen=True)
class Case:
    on: frozenset[str]
    when: Condition
    unless: Condition  # the case's exceptions and its rule's: FALSE when none
    explanation: str
    waits: bool = False  # asks about an absence: decided after the grace period
    about_registration: bool = False  # the question left when the device is still unregistered
    per_pack: bool = False  # reads its pack's name or parameters


@dataclass(frozen=True)
class Rule:
    rule_id: str
    title: str
    severity: Severity
    reference: str
    tags: tuple[str, ...]
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class Pack:
    name: str
    title: str
    rules: tuple[Rule, ...]
    params: dict[str, Any]
    ruleset_hash: str


def load_pack(name_or_path: str | Path, extensions: Path | None = None) -> Pack:
    path = _pack_path(name_or_path)
    document = _resolve(path, seen=())
    if extensions is not None:
        extra = _read(extensions)
        for list_name, values in (extra.get("lists") or {}).items():
            if list_name not in document["lists"]:
                raise PackError(f"{extensions}: list {list_name!r} is not in pack {document['pack']}")
            document["lists"][list_name] = [*document["lists"][list_name], *values]
    return _build(path, document)


def load_packs(names: list[str], extensions: Path | None = None) -> list[Pack]:
    packs = [load_pack(name, extensions) for name in names]
    duplicate = {p.name for p in packs if [q.name for q in packs].count(p.name) > 1}
    if duplicate:
        raise PackError(f"pack given twice: {', '.join(sorted(duplicate))}")
    return packs


def available_packs() -> list[str]:
    """The names of the packs that ship (files in PACKS_DIR with a top-level ``pack``)."""
    return sorted(path.stem for path in PACKS_DIR.glob("*.yaml") if "pack" in _read(path))


def _pack_path(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return PACKS_DIR / f"{name_or_path}.yaml"


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as error:
        raise PackError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise PackError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise PackError(f"{path}: a pack is a mapping with pack, title, lists, params, macros and rules")
    return document


def _resolve(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The pack document with its ``extends`` chain merged in (see the module's docstring)."""
    if path in seen:
        raise PackError(f"{path}: extends itself through {' -> '.join(map(str, seen))}")
    document = _read(path)
    for key in ("pack", "title", "rules"):
        if key not in document:
            raise PackError(f"{path}: missing {key!r}")
    for rule in document["rules"]:
        if not isinstance(rule, dict) or "id" not in rule:
            raise PackError(f"{path}: every rule needs an id")
    base_name = document.get("extends")
    if base_name is None:
        for rule in document["rules"]:
            if "append_cases" in rule:
                raise PackError(f"{path}: rule {rule['id']}: append_cases, but it extends no rule")
        return {**document, **{key: document.get(key) or {} for key in ("lists", "params", "macros")}}
    base = _resolve(
        _pack_path(str(base_name)) if "/" in str(base_name) else path.parent / f"{base_name}.yaml",
        (*seen, path),
    )
    rules = {rule["id"]: rule for rule in base["rules"]}
    for rule in document["rules"]:
        inherited = rules.get(rule["id"])
        where = f"{path}: rule {rule['id']}"
        rules[rule["id"]] = rule if inherited is None else _merge_rule(where, inherited, rule)
    for removed in document.get("remove", []):
        rules.pop(removed, None)
    return {
        "pack": document["pack"],
        "title": document["title"],
        **{key: {**base[key], **(document.get(key) or {})} for key in ("lists", "params", "macros")},
        "rules": list(rules.values()),
    }


def _merge_rule(where: str, base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    """A base rule with a child pack's changes: keys replaced, cases replaced, changed or added."""
    merged = {**base, **{k: v for k, v in child.items() if k not in ("cases", "append_cases")}}
    cases = child.get("cases")
    if isinstance(cases, dict):
        changed = list(base.get("cases") or [])
        for number, keys in cases.items():
            if not isinstance(number, int) or not 1 <= number <= len(changed):
                raise PackError(f"{where}: no case {number!r} to change (it has {len(changed)})")
            if not isinstance(keys, dict) or not isinstance(changed[number - 1], dict):
                raise PackError(f"{where}, case {number}: a change is a mapping of the case's keys")
            changed[number - 1] = {**changed[number - 1], **keys}
        merged["cases"] = changed
    elif cases is not None:
        merged["cases"] = cases
    appended = child.get("append_cases")
    if appended is not None:
        if not isinstance(appended, list):
            raise PackError(f"{where}: append_cases is a list of cases")
        merged["cases"] = [*(merged.get("cases") or []), *appended]
    return merged


def _build(path: Path, document: dict[str, Any]) -> Pack:
    lists = _expand_lists(path, document["lists"])
    macros = _Macros(path, document["macros"], lists)
    rules, ids = [], set()
    for raw in document["rules"]:
        rule = _rule(path, raw, lists, macros)
        if rule.rule_id in ids:
            raise PackError(f"{path}: rule {rule.rule_id} is defined twice")
        ids.add(rule.rule_id)
        if raw.get("enabled", True):
            rules.append(rule)
    params = document["params"]
    for name in ("filing_threshold", "filing_working_days"):
        if not isinstance(params.get(name), int):
            raise PackError(f"{path}: params.{name} must be an integer")
    canonical = json.dumps(
        {
            "pack": document["pack"],
            "lists": {k: sorted(v) for k, v in lists.items()},
            "params": params,
            "macros": document["macros"],
            "rules": document["rules"],
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return Pack(str(document["pack"]), str(document["title"]), tuple(rules), params, f"sha256:{digest}")


def _expand_lists(path: Path, raw: dict[str, Any]) -> dict[str, frozenset[str]]:
    def expand(name: str, trail: tuple[str, ...]) -> frozenset[str]:
        if name in trail:
            raise PackError(f"{path}: list {name!r} includes itself")
        if name not in raw:
            raise PackError(f"{path}: unknown list {name!r}")
        values: set[str] = set()
        for item in raw[name] or []:
            item = str(item)
            values |= expand(item[1:], (*trail, name)) if item.startswith("@") else {item}
        return frozenset(values)

    return {name: expand(name, ()) for name in raw}


def _rule(path: Path, raw: dict[str, Any], lists: dict[str, frozenset[str]], macros: "_Macros") -> Rule:
    rule_id = raw.get("id", "?")
    where = f"{path}: rule {rule_id}"
    if not re.fullmatch(r"FRT-[A-Z0-9-]+", str(rule_id)):
        raise PackError(f"{where}: id must look like FRT-SOMETHING")
    for key in ("title", "severity", "reference", "cases"):
        if not raw.get(key):
            raise PackError(f"{where}: missing {key!r}")
    if raw["severity"] not in SEVERITIES:
        raise PackError(
            f"{where}: severity {raw['severity']!r} is not one of {', '.join(sorted(SEVERITIES))}"
        )
    if not isinstance(raw["cases"], list):
        raise PackError(f"{where}: cases is a list")
    unless = _parse_all(where, raw.get("unless"), lists, macros, AnyOf)
    cases = tuple(
        _case(f"{where}, case {n + 1}", case, lists, macros, unless) for n, case in enumerate(raw["cases"])
    )
    return Rule(
        str(rule_id),
        str(raw["title"]),
        cast(Severity, raw["severity"]),
        str(raw["reference"]),
        tuple(raw.get("tags") or ()),
        cases,
    )


def _case(
    where: str, raw: Any, lists: dict[str, frozenset[str]], macros: "_Macros", rule_unless: Condition
) -> Case:
    if (
        not isinstance(raw, dict)
        or not raw.get("events")
        or not raw.get("when")
        or not raw.get("explanation")
    ):
        raise PackError(f"{where}: a case needs events, when and explanation")
    on = frozenset(raw["events"])
    unknown = on - set(_FIELDS)
    if unknown:
        raise PackError(f"{where}: unknown event type(s) {', '.join(sorted(unknown))}")
    fields = set.intersection(*(_FIELDS[t] for t in on))
    for _, placeholder, _, _ in string.Formatter().parse(raw["explanation"]):
        if placeholder is not None and placeholder not in fields | {f"device_{f}" for f in DEVICE_FACTS}:
            raise PackError(
                f"{where}: explanation uses {{{placeholder}}}, which {', '.join(sorted(on))} lacks"
            )
    when = _parse_all(where, raw["when"], lists, macros, AllOf)
    own_unless = _parse_all(where, raw.get("unless"), lists, macros, AnyOf)
    unless = _either(rule_unless, own_unless)
    when, unless = _typed(where, when, on), _typed(where, unless, on)
    return Case(
        on,
        when,
        unless,
        str(raw["explanation"]),
        waits(when) or waits(unless),
        about_registration(when),
        per_pack(when) or per_pack(unless),
    )


def _either(first: Condition, second: Condition) -> Condition:
    parts = tuple(part for part in (first, second) if part != FALSE)
    return parts[0] if len(parts) == 1 else AnyOf(parts)


def _typed(where: str, condition: Condition, on: frozenset[str]) -> Condition:
    """The condition with each field checked against the case's event types and marked as a
    list or not (a field of a macro or of the rule's ``unless`` is checked for every case)."""
    if isinstance(condition, In):
        name = condition.field
        if name.startswith("device."):
            fact = name.removeprefix("device.")
            if fact not in DEVICE_FACTS:
                raise PackError(f"{where}: unknown device fact {fact!r} (one of {', '.join(DEVICE_FACTS)})")
            is_list = fact in _DEVICE_LIST_FACTS
        else:
            lacking = sorted(t for t in on if name not in _FIELDS[t])
            if lacking:
                raise PackError(f"{where}: field {name!r} is not a field of {', '.join(lacking)}")
            kinds = {name in _LIST_FIELDS[t] for t in on}
            if len(kinds) > 1:
                raise PackError(f"{where}: field {name!r} is a list in some of the case's events only")
            (is_list,) = kinds
        if condition.every and not is_list:
            raise PackError(f"{where}: every applies to a list field, not {name!r}")
        return In(name, condition.values, condition.every, condition.ignore_case, is_list)
    if isinstance(condition, Not):
        return Not(_typed(where, condition.of, on))
    if isinstance(condition, AnyOf | AllOf):
        return type(condition)(tuple(_typed(where, part, on) for part in condition.of))
    return condition


def _parse_all(
    where: str, raw: Any, lists: dict[str, frozenset[str]], macros: "_Macros", combine: type[AnyOf | AllOf]
) -> Condition:
    """A condition, or a list of them combined (``when``: all; ``unless``: any)."""
    if raw is None:
        return FALSE if combine is AnyOf else AllOf(())
    if isinstance(raw, list):
        parts = tuple(_parse(where, item, lists, macros, ()) for item in raw)
        return parts[0] if len(parts) == 1 else combine(parts)
    return _parse(where, raw, lists, macros, ())


def _parse(
    where: str, raw: Any, lists: dict[str, frozenset[str]], macros: "_Macros", trail: tuple[str, ...]
) -> Condition:
    if isinstance(raw, list):
        parts = tuple(_parse(where, item, lists, macros, trail) for item in raw)
        return parts[0] if len(parts) == 1 else AllOf(parts)
    if isinstance(raw, str):
        if raw in macros.raw:
            return macros.expand(where, raw, trail)
        if raw not in PREDICATES:
            raise PackError(f"{where}: unknown predicate {raw!r}")
        return Test(raw)
    if not isinstance(raw, dict) or len(raw) != 1:
        raise PackError(
            f"{where}: a condition is a predicate or macro name, or one of not, any, all, in; not {raw!r}"
        )
    ((operator, argument),) = raw.items()
    if operator == "not":
        return Not(_parse(where, argument, lists, macros, trail))
    if operator in ("any", "all"):
        if not isinstance(argument, list):
            raise PackError(f"{where}: {operator} takes a list of conditions")
        parts = tuple(_parse(where, item, lists, macros, trail) for item in argument)
        return AnyOf(parts) if operator == "any" else AllOf(parts)
    if operator == "in":
        return _parse_in(where, argument, lists)
    raise PackError(
        f"{where}: a condition is a predicate or macro name, or one of not, any, all, in; not {raw!r}"
    )


def _parse_in(where: str, argument: Any, lists: dict[str, frozenset[str]]) -> In:
    if not isinstance(argument, dict) or not {"field", "values"} <= argument.keys():
        raise PackError(f"{where}: in takes {{field: F, values: a list or a list's name}}")
    extra = argument.keys() - {"field", "values", "every", "ignore_case"}
    if extra:
        raise PackError(f"{where}: in has no key(s) {', '.join(sorted(extra))}")
    values = argument["values"]
    if isinstance(values, str):
        if values not in lists:
            raise PackError(f"{where}: unknown list {values!r}")
        chosen: frozenset[Any] = lists[values]
    elif isinstance(values, list) and all(v is None or isinstance(v, str | bool | int) for v in values):
        chosen = frozenset(values)
    else:
        raise PackError(f"{where}: the values of in are a list name or a list of scalars")
    ignore_case = argument.get("ignore_case") is True
    if ignore_case:
        chosen = frozenset(v.lower() if isinstance(v, str) else v for v in chosen)
    return In(str(argument["field"]), chosen, argument.get("every") is True, ignore_case)


class _Macros:
    """A pack's macros, each expanded and checked once, at load (an error names the macro)."""

    def __init__(self, path: Path, raw: dict[str, Any], lists: dict[str, frozenset[str]]) -> None:
        self.raw, self.lists = raw, lists
        self._expanded: dict[str, Condition] = {}
        for name in raw:
            if name in PREDICATES:
                raise PackError(f"{path}: macro {name!r} has the name of a predicate")
        for name in raw:
            self.expand(f"{path}: macro {name}", name, ())

    def expand(self, where: str, name: str, trail: tuple[str, ...]) -> Condition:
        if name in trail:
            raise PackError(f"{where}: macro cycle {' -> '.join((*trail, name))}")
        known = self._expanded.get(name)
        if known is None:
            known = self._expanded[name] = _parse(where, self.raw[name], self.lists, self, (*trail, name))
        return known
