"""The rule language, feature by feature (stream_processors/rules/pack.py): macros, not, any,
all, the field-in-list test, unless per case, extends that changes or appends cases, and the
errors that name the pack, the rule and the case."""

from pathlib import Path
from typing import Any

import pytest

from stream_processors.rules.engine import Engine, run_events
from stream_processors.rules.examples import build_events, load_examples, run_example
from stream_processors.rules.pack import PACKS_DIR, Pack, PackError, load_pack

DOCUMENT = load_examples()  # its defaults: a registered office entrance, consent c1 for s1...
HEADER = "pack: {name}\ntitle: t\nparams: {{filing_threshold: 1, filing_working_days: 1}}\n"
REGISTERED = {"type": "device.registered", "at": -100}


def write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(HEADER.format(name=name) + body)
    return path


def rule(cases: str, *, rule_id: str = "FRT-X", extra: str = "") -> str:
    head = f"rules:\n  - id: {rule_id}\n    title: x\n    severity: low\n    reference: r\n"
    return f"{head}{extra}    cases:\n{cases}"


def case(events: str, when: str, unless: str | None = None) -> str:
    text = f"      - events: [{events}]\n        when: {when}\n"
    if unless is not None:
        text += f"        unless: {unless}\n"
    return text + "        explanation: x\n"


def fired(pack: Pack, *events: dict[str, Any]) -> list[int]:
    """The positions of the events the pack's rule FRT-X fires on (final state)."""
    problems = run_example(DOCUMENT, {"name": "t", "events": list(events)}, pack)
    return sorted(int(p.rsplit(" ", 1)[1]) for p in problems if p.startswith("unexpected FRT-X"))


def recognition(at: float, **fields: Any) -> dict[str, Any]:
    return {"type": "recognition.performed", "at": at, **fields}


# -- in -------------------------------------------------------------------------------------------


def test_in_reads_an_event_field_against_a_named_or_an_inline_list(tmp_path: Path) -> None:
    lists = "lists:\n  exempt: [law, emergency]\n"
    named = load_pack(
        write(
            tmp_path,
            "a",
            lists + rule(case("recognition.performed", "{in: {field: legal_basis, values: exempt}}")),
        )
    )
    inline = load_pack(
        write(tmp_path, "b", rule(case("recognition.performed", "{in: {field: purpose, values: [payment]}}")))
    )
    events = [
        REGISTERED,
        recognition(1, legal_basis="law"),
        recognition(2),
        recognition(3, purpose="payment"),
    ]
    assert fired(named, *events) == [1]
    assert fired(inline, *events) == [3]


def test_in_reads_the_device_registration_and_null_and_true_are_values(tmp_path: Path) -> None:
    pack = load_pack(
        write(
            tmp_path,
            "p",
            rule(
                case("recognition.performed", "[{in: {field: device.legal_mandate, values: [null]}}, "
                     "{in: {field: device.public_place, values: [true]}}]")
            ),
        )
    )  # fmt: skip
    public = {**REGISTERED, "public_place": True}
    assert fired(pack, public, recognition(1)) == [1]
    assert fired(pack, REGISTERED, recognition(1)) == []
    assert fired(pack, {**public, "legal_mandate": "a law"}, recognition(1)) == []


def test_in_on_a_list_field_any_item_or_every_item_and_ignoring_case(tmp_path: Path) -> None:
    any_item = "{in: {field: device.purposes, values: [payment]}}"
    every_item = "{in: {field: device.purposes, values: [access_control, payment], every: true}}"
    folded = "{in: {field: attributes, values: [health], ignore_case: true}}"
    exact = "{in: {field: attributes, values: [health]}}"
    packs = [
        load_pack(write(tmp_path, f"p{n}", rule(case(events, when))))
        for n, (events, when) in enumerate(
            [
                ("recognition.performed", any_item),
                ("recognition.performed", every_item),
                ("attributes.inferred", folded),
                ("attributes.inferred", exact),
            ]
        )
    ]
    both = {**REGISTERED, "purposes": ["access_control", "payment"]}
    beyond = {**REGISTERED, "purposes": ["access_control", "marketing"]}
    assert [fired(packs[0], d, recognition(1)) for d in (REGISTERED, both)] == [[], [1]]
    assert [fired(packs[1], d, recognition(1)) for d in (REGISTERED, both, beyond)] == [[1], [1], []]
    inferred = {"type": "attributes.inferred", "at": 1, "attributes": ["age", "Health"]}
    assert fired(packs[2], REGISTERED, inferred) == [1]
    assert fired(packs[3], REGISTERED, inferred) == []


# -- not, any, all, macros ----------------------------------------------------------------------------


def test_not_any_and_all_nest(tmp_path: Path) -> None:
    when = (
        "{any: [{all: [{in: {field: purpose, values: [payment]}},"
        " {not: {in: {field: legal_basis, values: [law]}}}]},"
        " {in: {field: purpose, values: [marketing]}}]}"
    )
    pack = load_pack(write(tmp_path, "p", rule(case("recognition.performed", when))))
    events = [
        REGISTERED,
        recognition(1, purpose="payment"),
        recognition(2, purpose="payment", legal_basis="law"),
        recognition(3, purpose="marketing", legal_basis="law"),
        recognition(4),
    ]
    assert fired(pack, *events) == [1, 3]


def test_a_macro_is_used_like_a_predicate_and_may_use_other_macros(tmp_path: Path) -> None:
    macros = (
        "macros:\n  paying: {in: {field: purpose, values: [payment]}}\n"
        "  paying_without_law: [paying, {not: {in: {field: legal_basis, values: [law]}}}]\n"
    )
    pack = load_pack(
        write(
            tmp_path, "p", macros + rule(case("recognition.performed", "[has_subject, paying_without_law]"))
        )
    )
    events = [
        REGISTERED,
        recognition(1, purpose="payment"),
        recognition(2, purpose="payment", legal_basis="law"),
    ]
    assert fired(pack, *events) == [1]


# -- unless ---------------------------------------------------------------------------------------


def test_unless_per_case_and_the_rules_unless_for_every_case(tmp_path: Path) -> None:
    cases = case("recognition.performed", "has_subject", "{in: {field: purpose, values: [payment]}}")
    cases += case("attributes.inferred", "has_subject")
    pack = load_pack(
        write(tmp_path, "p", rule(cases, extra="    unless: [{in: {field: legal_basis, values: [law]}}]\n"))
    )
    inferred = {"type": "attributes.inferred", "at": 3}
    events = [
        REGISTERED,
        recognition(1),
        recognition(2, purpose="payment"),  # its case's exception
        inferred,  # the payment exception is the other case's only
        {**inferred, "at": 4, "legal_basis": "law"},  # the rule's exception, every case's
        recognition(5, legal_basis="law"),
    ]
    assert fired(pack, *events) == [1, 3]


def test_a_case_whose_exception_asks_about_consent_waits_for_late_consents(tmp_path: Path) -> None:
    """An exception that looks for a consent makes its case wait for the grace period, like a
    condition would: a consent that arrives late but occurred in time stops it, unrevised."""
    pack = load_pack(
        write(tmp_path, "p", rule(case("recognition.performed", "has_subject", "valid_consent")))
    )
    assert pack.rules[0].cases[0].waits
    late_consent = {"type": "consent.granted", "at": 0}
    example = {"name": "t", "events": [REGISTERED, recognition(5), late_consent], "expect": {}}
    assert run_example(DOCUMENT, example, pack) == []
    assert fired(pack, REGISTERED, recognition(5)) == [1]


# -- extends --------------------------------------------------------------------------------------

BASE = (
    "lists:\n  venues: [bank]\n"
    "macros:\n  at_venue: {in: {field: device.venue_type, values: venues}}\n"
    + rule(
        case("recognition.performed", "[has_subject, at_venue]")
        + case("attributes.inferred", "[has_subject, at_venue]"),
        extra="    tags: [a]\n",
    )
)


def child(tmp_path: Path, body: str) -> Pack:
    write(tmp_path, "base", BASE)
    return load_pack(write(tmp_path, "child", "extends: base\n" + body))


def test_extends_replaces_a_rules_key_and_keeps_its_cases(tmp_path: Path) -> None:
    pack = child(tmp_path, "rules:\n  - id: FRT-X\n    severity: high\n")
    (merged,) = pack.rules
    assert (merged.severity, merged.title, merged.tags, len(merged.cases)) == ("high", "x", ("a",), 2)


def test_extends_changes_one_case_and_appends_cases(tmp_path: Path) -> None:
    body = "rules:\n  - id: FRT-X\n    cases:\n      2: {when: has_subject}\n    append_cases:\n" + case(
        "media.retained", "has_subject"
    )
    pack = child(tmp_path, body)
    bank = {**REGISTERED, "venue_type": "bank"}
    events = [
        REGISTERED,
        recognition(1),  # case 1 as it was: only at a listed venue
        {"type": "attributes.inferred", "at": 2},  # case 2 changed: any venue
        {"type": "media.retained", "at": 3},  # appended
    ]
    assert fired(pack, *events) == [2, 3]
    assert fired(pack, bank, *events[1:]) == [1, 2, 3]
    assert [sorted(c.on) for c in pack.rules[0].cases] == [
        ["recognition.performed"],
        ["attributes.inferred"],
        ["media.retained"],
    ]


def test_extends_merges_lists_and_macros_by_name_and_base_rules_use_the_childs(tmp_path: Path) -> None:
    bank, hotel = {**REGISTERED, "venue_type": "bank"}, {**REGISTERED, "venue_type": "hotel"}
    base = load_pack(write(tmp_path, "base", BASE))
    listed = child(tmp_path, "lists:\n  venues: [hotel]\nrules: []\n")
    anywhere = child(tmp_path, "macros:\n  at_venue: {all: []}\nrules: []\n")
    assert [fired(p, bank, recognition(1)) for p in (base, listed, anywhere)] == [[1], [], [1]]
    assert [fired(p, hotel, recognition(1)) for p in (base, listed, anywhere)] == [[], [1], [1]]


def test_the_2025_pack_restates_no_case_of_the_draft() -> None:
    text = (PACKS_DIR / "cn-cac-2025.yaml").read_text()
    assert text.count("events:") == 2  # FRT-REMOTE-STORAGE's own two cases, nothing inherited
    draft, final = load_pack("cn-cac-2023-draft"), load_pack("cn-cac-2025")
    coercion = {p.name: next(r for r in p.rules if r.rule_id == "FRT-VENUE-COERCION") for p in (draft, final)}
    assert [c.when for c in coercion["cn-cac-2025"].cases] == [
        c.when for c in coercion["cn-cac-2023-draft"].cases
    ]
    assert coercion["cn-cac-2025"].cases[0].unless != coercion["cn-cac-2023-draft"].cases[0].unless


# -- what the engine is told by the predicates, not by names ------------------------------------------


def test_a_case_about_registration_is_known_by_its_predicates_property(tmp_path: Path) -> None:
    pack = load_pack(write(tmp_path, "p", rule(case("media.deleted", "{all: [device_unregistered]}"))))
    assert pack.rules[0].cases[0].about_registration and pack.rules[0].cases[0].waits
    assert fired(pack, {"type": "media.deleted", "at": 1}) == [0]


# -- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (rule(case("recognition.performed", "[nope]")), "rule FRT-X, case 1: unknown predicate 'nope'"),
        (
            rule(case("recognition.performed", "has_subject", "{not: nope}")),
            "rule FRT-X, case 1: unknown predicate 'nope'",
        ),
        (
            rule(case("recognition.performed", "has_subject"), extra="    unless: [nope]\n"),
            "rule FRT-X: unknown predicate 'nope'",
        ),
        (
            "macros:\n  m: [has_subject, nope]\n" + rule(case("recognition.performed", "m")),
            "macro m: unknown predicate 'nope'",
        ),
        (
            "macros:\n  a: [b]\n  b: {not: a}\n" + rule(case("recognition.performed", "a")),
            "macro a: macro cycle a -> b -> a",
        ),
        (
            "macros:\n  has_subject: {all: []}\n" + rule(case("recognition.performed", "has_subject")),
            "macro 'has_subject' has the name of a predicate",
        ),
        (
            rule(case("recognition.performed", "{in: {field: purpose, values: nowhere}}")),
            "rule FRT-X, case 1: unknown list 'nowhere'",
        ),
        (
            rule(case("media.deleted", "{in: {field: purpose, values: [payment]}}")),
            "rule FRT-X, case 1: field 'purpose' is not a field of media.deleted",
        ),
        (
            "macros:\n  paying: {in: {field: purpose, values: [payment]}}\n"
            + rule(case("recognition.performed", "paying") + case("media.deleted", "paying")),
            "rule FRT-X, case 2: field 'purpose' is not a field of media.deleted",
        ),
        (
            rule(case("recognition.performed", "{in: {field: device.colour, values: [red]}}")),
            "rule FRT-X, case 1: unknown device fact 'colour' (one of site_id, venue_type, location_type, "
            "public_place, purposes, signage, alternatives, legal_mandate, storage)",
        ),
        (
            rule(case("recognition.performed", "{in: {field: purpose, values: [payment], every: true}}")),
            "rule FRT-X, case 1: every applies to a list field, not 'purpose'",
        ),
        (
            rule(case("recognition.performed", "{in: {field: purpose, value: [payment]}}")),
            "rule FRT-X, case 1: in takes {field: F, values: a list or a list's name}",
        ),
        (
            rule(case("recognition.performed", "{in: {field: purpose, values: [payment], case: no}}")),
            "rule FRT-X, case 1: in has no key(s) case",
        ),
        (
            rule(case("recognition.performed", "{purpose_in: [payment]}")),
            "rule FRT-X, case 1: a condition is a predicate or macro name, or one of not, any, all, in; "
            "not {'purpose_in': ['payment']}",
        ),
        (
            rule(case("recognition.performed", "{any: has_subject}")),
            "rule FRT-X, case 1: any takes a list of conditions",
        ),
        (
            "rules:\n  - id: FRT-X\n    append_cases: []\n",
            "rule FRT-X: append_cases, but it extends no rule",
        ),
    ],
)
def test_pack_errors_name_the_pack_the_rule_and_the_case(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, "p", body)
    with pytest.raises(PackError) as error:
        load_pack(path)
    assert str(error.value) == f"{path}: {message}"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "rules:\n  - id: FRT-X\n    cases: {3: {when: has_subject}}\n",
            "rule FRT-X: no case 3 to change (it has 2)",
        ),
        (
            "rules:\n  - id: FRT-X\n    cases: {1: has_subject}\n",
            "rule FRT-X, case 1: a change is a mapping of the case's keys",
        ),
        (
            "rules:\n  - id: FRT-X\n    append_cases: {when: x}\n",
            "rule FRT-X: append_cases is a list of cases",
        ),
        (
            "rules:\n  - id: FRT-X\n    cases: {1: {when: [has_subject, nope]}}\n",
            "rule FRT-X, case 1: unknown predicate 'nope'",
        ),
    ],
)
def test_extends_errors_name_the_rule_and_the_case(tmp_path: Path, body: str, message: str) -> None:
    write(tmp_path, "base", BASE)
    path = write(tmp_path, "child", "extends: base\n" + body)
    with pytest.raises(PackError) as error:
        load_pack(path)
    assert str(error.value) == f"{path}: {message}"


def test_a_question_cases_begin_with_is_asked_once_an_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two rules that begin alike, in two packs: their first question is answered once an event,
    and when it fails no other question of theirs is asked."""
    from stream_processors.rules.predicates import PREDICATES, Context, Predicate

    asked: list[str] = []

    def probe(ctx: Context) -> bool:
        asked.append(ctx.event.event_id)
        return bool(ctx.event.subject_ref)

    monkeypatch.setitem(PREDICATES, "probe", Predicate(probe, False, False, False))
    rules = rule(case("recognition.performed", "[probe, {in: {field: purpose, values: [payment]}}]"))
    rules += rule(
        case("recognition.performed", "[probe, {not: {in: {field: legal_basis, values: [law]}}}]"),
        rule_id="FRT-Y",
    ).removeprefix("rules:\n")
    packs = [load_pack(write(tmp_path, name, rules)) for name in ("a", "b")]
    events = [REGISTERED, recognition(1, purpose="payment"), recognition(2, subject_ref=None)]
    for pack in packs:
        assert fired(pack, *events) == [1]
    engine = Engine(packs)
    asked.clear()
    built = build_events(DOCUMENT, {"name": "t", "events": events})
    fired_rules = [(v.policy_pack, v.rule_id) for v in run_events(engine, iter(built))]
    assert fired_rules == [("a", "FRT-X"), ("a", "FRT-Y"), ("b", "FRT-X"), ("b", "FRT-Y")]
    assert asked == [built[1].event_id, built[2].event_id]
