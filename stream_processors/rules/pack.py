"""Policy packs: rules as data (stream_processors/packs/*.yaml), loaded, checked and hashed.

A pack names its lists and parameters and its rules; each rule has one or more cases (the event
types it judges, ``events`` and the predicates that must all hold), exceptions (predicates any of which
stops it), and an explanation template. A pack may extend another and override rules by id.
A list item "@name" includes another list, so a deployment fills the empty ``deployment_*``
lists (an extensions file) without editing a rule.
"""

import hashlib
import json
import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import yaml

from contracts.events import EVENT_CLASSES
from contracts.vocabulary import Severity
from stream_processors.rules.facts import DEVICE_FACTS
from stream_processors.rules.predicates import PREDICATES

PACKS_DIR = Path(__file__).parent.parent / "packs"
SEVERITIES = set(get_args(Severity))
_FIELDS = {cls.__struct_config__.tag: set(cls.__struct_fields__) for cls in EVENT_CLASSES}


class PackError(ValueError):
    """A pack that cannot be used; the message names the file and the rule."""


@dataclass(frozen=True)
class Condition:
    name: str
    values: frozenset[str] | None = None

    @property
    def waits(self) -> bool:
        return PREDICATES[self.name].waits


@dataclass(frozen=True)
class Case:
    on: frozenset[str]
    when: tuple[Condition, ...]
    explanation: str

    @property
    def waits(self) -> bool:
        return any(c.waits for c in self.when)


@dataclass(frozen=True)
class Rule:
    rule_id: str
    title: str
    severity: Severity
    reference: str
    tags: tuple[str, ...]
    cases: tuple[Case, ...]
    unless: tuple[Condition, ...]


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
        raise PackError(f"{path}: a pack is a mapping with pack, title, lists, params and rules")
    return document


def _resolve(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """The pack document with its ``extends`` chain merged in (rules overridden by id)."""
    if path in seen:
        raise PackError(f"{path}: extends itself through {' -> '.join(map(str, seen))}")
    document = _read(path)
    for key in ("pack", "title", "rules"):
        if key not in document:
            raise PackError(f"{path}: missing {key!r}")
    base_name = document.get("extends")
    if base_name is None:
        document.setdefault("lists", {})
        document.setdefault("params", {})
        return document
    base = _resolve(
        _pack_path(str(base_name)) if "/" in str(base_name) else path.parent / f"{base_name}.yaml",
        (*seen, path),
    )
    rules = {rule["id"]: rule for rule in base["rules"]}
    for rule in document["rules"]:
        if not isinstance(rule, dict) or "id" not in rule:
            raise PackError(f"{path}: every rule needs an id")
        rules[rule["id"]] = {**rules.get(rule["id"], {}), **rule}
    for removed in document.get("remove", []):
        rules.pop(removed, None)
    return {
        "pack": document["pack"],
        "title": document["title"],
        "lists": {**base["lists"], **(document.get("lists") or {})},
        "params": {**base["params"], **(document.get("params") or {})},
        "rules": list(rules.values()),
    }


def _build(path: Path, document: dict[str, Any]) -> Pack:
    lists = _expand_lists(path, document["lists"])
    rules, ids = [], set()
    for raw in document["rules"]:
        rule = _rule(path, raw, lists)
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


def _rule(path: Path, raw: dict[str, Any], lists: dict[str, frozenset[str]]) -> Rule:
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
    unless = tuple(_condition(where, item, lists) for item in raw.get("unless") or [])
    cases = tuple(_case(f"{where}, case {n + 1}", case, lists) for n, case in enumerate(raw["cases"]))
    return Rule(
        str(rule_id),
        str(raw["title"]),
        cast(Severity, raw["severity"]),
        str(raw["reference"]),
        tuple(raw.get("tags") or ()),
        cases,
        unless,
    )


def _case(where: str, raw: Any, lists: dict[str, frozenset[str]]) -> Case:
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
    fields = set.intersection(*(_FIELDS[t] for t in on)) | {f"device_{f}" for f in DEVICE_FACTS}
    for _, placeholder, _, _ in string.Formatter().parse(raw["explanation"]):
        if placeholder is not None and placeholder not in fields:
            raise PackError(
                f"{where}: explanation uses {{{placeholder}}}, which {', '.join(sorted(on))} lacks"
            )
    return Case(on, tuple(_condition(where, item, lists) for item in raw["when"]), str(raw["explanation"]))


def _condition(where: str, item: Any, lists: dict[str, frozenset[str]]) -> Condition:
    if isinstance(item, str):
        name, argument = item, None
    elif isinstance(item, dict) and len(item) == 1:
        name, argument = next(iter(item.items()))
    else:
        raise PackError(f"{where}: a condition is a predicate name or {{name: list}}, not {item!r}")
    predicate = PREDICATES.get(name)
    if predicate is None:
        raise PackError(f"{where}: unknown predicate {name!r}")
    if predicate.takes_list != (argument is not None):
        raise PackError(f"{where}: predicate {name!r} {'needs' if predicate.takes_list else 'takes no'} list")
    if argument is None:
        return Condition(name)
    if isinstance(argument, str):
        if argument not in lists:
            raise PackError(f"{where}: unknown list {argument!r}")
        return Condition(name, lists[argument])
    if isinstance(argument, list):
        return Condition(name, frozenset(map(str, argument)))
    raise PackError(f"{where}: the argument of {name!r} is a list name or a list")
