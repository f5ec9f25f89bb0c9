"""The API's access file: tokens (stored as SHA-256 only), roles and jurisdictions, its
validation, the `frtwatch api token` edits, and reloading without a restart; whose query records
each principal may read."""

import os
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from audit.access import (
    Access,
    AccessError,
    AccessFile,
    Principal,
    Scope,
    add_principal,
    set_jurisdiction,
    token_hash,
)

REGULATOR = Principal("cac-shanghai", "regulator", jurisdiction="shanghai")
OPERATOR = Principal("op-000-compliance", "operator", operator_id="op-000")
OPS = Principal("noc", "ops")


def document() -> dict[str, Any]:
    return {
        "jurisdictions": {"shanghai": ["op-000", "op-001"], "beijing": ["op-002"]},
        "principals": [
            {
                "name": "cac-shanghai",
                "role": "regulator",
                "jurisdiction": "shanghai",
                "token_sha256": token_hash("t-regulator"),
            },
            {
                "name": "op-000-compliance",
                "role": "operator",
                "operator_id": "op-000",
                "token_sha256": token_hash("t-operator"),
            },
            {"name": "noc", "role": "ops", "token_sha256": token_hash("t-ops")},
        ],
    }


def bump_mtime(path: Path) -> None:
    """Make sure the file's mtime differs from what AccessFile last saw."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def test_token_hash_is_sha256_hex() -> None:
    assert token_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


@pytest.mark.parametrize(
    ("token", "principal"), [("t-regulator", REGULATOR), ("t-operator", OPERATOR), ("t-ops", OPS)]
)
def test_each_token_authenticates_its_principal(token: str, principal: Principal) -> None:
    assert Access.parse(document()).authenticate(token) == principal


@pytest.mark.parametrize("token", ["t-unknown", "", token_hash("t-ops")])
def test_an_unknown_token_authenticates_nobody(token: str) -> None:
    assert Access.parse(document()).authenticate(token) is None


def test_a_regulator_sees_its_jurisdictions_operators() -> None:
    assert Access.parse(document()).operators(REGULATOR) == frozenset({"op-000", "op-001"})


def test_an_operator_sees_only_itself() -> None:
    assert Access.parse(document()).operators(OPERATOR) == frozenset({"op-000"})


def test_ops_sees_no_rows_scope() -> None:
    assert Access.parse(document()).operators(OPS) is None


def test_an_empty_document_has_nobody() -> None:
    access = Access.parse({})
    assert access.by_token_hash == {} and access.jurisdictions == {}


def _invalid(case: str) -> dict[str, Any]:
    doc = document()
    principals = doc["principals"]
    if case == "unknown role":
        principals[1]["role"] = "admin"
    elif case == "unknown jurisdiction":
        principals[0]["jurisdiction"] = "guangzhou"
    elif case == "operator without operator_id":
        del principals[1]["operator_id"]
    elif case == "duplicate name":
        principals[1]["name"] = "cac-shanghai"
    elif case == "uppercase token hash":
        principals[1]["token_sha256"] = token_hash("t-operator").upper()
    elif case == "short token hash":
        principals[1]["token_sha256"] = token_hash("t-operator")[:63]
    elif case == "clear-text token":
        principals[1]["token_sha256"] = "t-operator"
    elif case == "shared token hash":
        principals[1]["token_sha256"] = token_hash("t-regulator")
    return doc


INVALID = [
    ("unknown role", "op-000-compliance"),
    ("unknown jurisdiction", "cac-shanghai"),
    ("operator without operator_id", "op-000-compliance"),
    ("duplicate name", "cac-shanghai"),
    ("uppercase token hash", "op-000-compliance"),
    ("short token hash", "op-000-compliance"),
    ("clear-text token", "op-000-compliance"),
    ("shared token hash", "op-000-compliance"),
]


@pytest.mark.parametrize(("case", "name"), INVALID)
def test_an_invalid_document_is_refused_naming_the_entry(case: str, name: str) -> None:
    index = 0 if case == "unknown jurisdiction" else 1
    with pytest.raises(AccessError, match=rf"^where: principals\[{index}\]"):
        Access.parse(_invalid(case), "where")


@pytest.mark.parametrize(("case", "name"), INVALID)
def test_the_refusal_names_the_principal(case: str, name: str) -> None:
    with pytest.raises(AccessError) as refused:
        Access.parse(_invalid(case))
    assert name in str(refused.value)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("duplicate name", "where: principals[1] (cac-shanghai): the name is taken by another principal"),
        ("shared token hash", "where: principals[1] (op-000-compliance): shares its token with cac-shanghai"),
    ],
)
def test_a_name_or_token_of_another_principal_is_refused(case: str, message: str) -> None:
    with pytest.raises(AccessError) as refused:
        Access.parse(_invalid(case), "where")
    assert str(refused.value) == message


MALFORMED = [
    ["a", "list"],
    "text",
    {"principals": ["noc"]},
    {"principals": {"name": "noc"}},
    {"jurisdictions": ["shanghai"]},
    {"jurisdictions": {"x": 5}},
    {
        "jurisdictions": {"shanghai": []},
        "principals": [{"name": "cac", "role": "regulator", "jurisdiction": ["shanghai"]}],
    },
]


@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_document_is_refused_naming_the_file(malformed: Any) -> None:
    with pytest.raises(AccessError, match=r"^where: "):
        Access.parse(malformed, "where")


def test_a_principal_without_a_name_is_refused() -> None:
    doc = document()
    del doc["principals"][2]["name"]
    with pytest.raises(AccessError, match=r"principals\[2\]"):
        Access.parse(doc)


def test_load_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AccessError, match="no access file"):
        Access.load(tmp_path / "access.yaml")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("principals: [\n", "not YAML"),
        ("- a list\n", "expected a mapping"),
        ("just text\n", "expected a mapping"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_refused_and_left_alone(
    tmp_path: Path, text: str, reason: str
) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(text)
    with pytest.raises(AccessError, match=rf"^{re.escape(str(path))}: {reason}"):
        Access.load(path)
    with pytest.raises(AccessError, match=reason):
        add_principal(path, "noc", "ops")
    with pytest.raises(AccessError, match=reason):
        set_jurisdiction(path, "shanghai", ["op-000"])
    assert path.read_text() == text


def test_add_principal_writes_a_private_file_with_a_working_token(tmp_path: Path) -> None:
    path = tmp_path / "api" / "access.yaml"
    token = add_principal(path, "noc", "ops")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Access.load(path).authenticate(token) == OPS
    assert token not in path.read_text()
    assert token_hash(token) in path.read_text()
    assert sorted(p.name for p in path.parent.iterdir()) == ["access.yaml"]  # no temporary left


def test_the_temporary_file_is_private_from_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "access.yaml"
    temporary = path.with_suffix(".tmp")
    temporary.write_text("left by a crash")
    temporary.chmod(0o644)
    modes = []
    dump = yaml.safe_dump

    def spy(*args: Any, **kwargs: Any) -> Any:
        modes.append(stat.S_IMODE(temporary.stat().st_mode))
        return dump(*args, **kwargs)

    monkeypatch.setattr(yaml, "safe_dump", spy)
    add_principal(path, "noc", "ops")
    assert modes == [0o600]
    assert not temporary.exists()


def test_add_principal_makes_a_new_token_each_time(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    assert add_principal(path, "a", "ops") != add_principal(path, "b", "ops")


def test_re_adding_a_name_replaces_its_token(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    other = add_principal(path, "other", "operator", operator_id="op-001")
    old = add_principal(path, "noc", "ops")
    new = add_principal(path, "noc", "ops")
    access = Access.load(path)
    assert access.authenticate(old) is None
    assert access.authenticate(new) == OPS
    assert access.authenticate(other) == Principal("other", "operator", operator_id="op-001")
    assert [p["name"] for p in yaml.safe_load(path.read_text())["principals"]] == ["other", "noc"]


def test_a_regulator_needs_its_jurisdiction_set_first(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    add_principal(path, "noc", "ops")
    before = path.read_bytes()
    with pytest.raises(AccessError, match="cac-shanghai"):
        add_principal(path, "cac-shanghai", "regulator", jurisdiction="shanghai")
    assert path.read_bytes() == before


def test_a_refused_first_principal_writes_no_file(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    with pytest.raises(AccessError):
        add_principal(path, "op", "operator")
    assert not path.exists()


def test_set_jurisdiction_then_add_a_regulator(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    set_jurisdiction(path, "shanghai", ["op-001", "op-000", "op-001"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = add_principal(path, "cac-shanghai", "regulator", jurisdiction="shanghai")
    access = Access.load(path)
    assert access.authenticate(token) == REGULATOR
    assert access.operators(REGULATOR) == frozenset({"op-000", "op-001"})
    assert yaml.safe_load(path.read_text())["jurisdictions"] == {"shanghai": ["op-000", "op-001"]}


def test_access_file_picks_up_a_new_principal(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    first = add_principal(path, "noc", "ops")
    access_file = AccessFile(path)
    second = add_principal(path, "op-000-compliance", "operator", operator_id="op-000")
    bump_mtime(path)
    current = access_file.current()
    assert current.authenticate(second) == OPERATOR
    assert current.authenticate(first) == OPS


def test_access_file_picks_up_a_revoked_token(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    old = add_principal(path, "noc", "ops")
    access_file = AccessFile(path)
    add_principal(path, "noc", "ops")
    bump_mtime(path)
    assert access_file.current().authenticate(old) is None


@pytest.mark.parametrize(
    "edit",
    [
        "principals: [\n",  # not YAML
        "principals:\n  - {name: noc, role: root, token_sha256: " + "a" * 64 + "}\n",
        "principals:\n  - {name: cac, role: regulator, jurisdiction: x, token_sha256: " + "a" * 64 + "}\n",
        # wrongly shaped
        "- just a list\n",
        "principals: [noc]\n",
        "jurisdictions: [shanghai]\n",
        "jurisdictions: {x: 5}\n",
    ],
)
def test_access_file_keeps_the_previous_version_after_a_bad_edit(tmp_path: Path, edit: str) -> None:
    path = tmp_path / "access.yaml"
    token = add_principal(path, "noc", "ops")
    access_file = AccessFile(path)
    path.write_text(edit)
    bump_mtime(path)
    assert access_file.current().authenticate(token) == OPS
    assert access_file.current().authenticate(token) == OPS  # and keeps it on later calls


def test_access_file_without_a_file_refuses_everyone_until_one_is_made(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    access_file = AccessFile(path)
    assert access_file.current().by_token_hash == {}
    token = add_principal(path, "noc", "ops")
    assert access_file.current().authenticate(token) == OPS


def test_access_file_refuses_everyone_once_the_file_goes_away(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    token = add_principal(path, "noc", "ops")
    access_file = AccessFile(path)
    path.unlink()
    assert access_file.current().authenticate(token) is None


@pytest.mark.parametrize(
    ("edit", "text"), [("token", "principals: [noc]\n"), ("jurisdiction", "jurisdictions: [x]\n")]
)
def test_an_edit_of_a_wrongly_shaped_file_is_refused_and_leaves_it_alone(
    tmp_path: Path, edit: str, text: str
) -> None:
    path = tmp_path / "access.yaml"
    path.write_text(text)
    with pytest.raises(AccessError):
        if edit == "token":
            add_principal(path, "noc", "ops")
        else:
            set_jurisdiction(path, "shanghai", ["op-000"])
    assert path.read_text() == text


AUDITOR = Principal("dpa-oversight", "auditor")


def test_each_principal_reads_its_own_query_records_and_an_auditor_everyones() -> None:
    access = Access.parse(document())
    assert access.scope(REGULATOR) == Scope(("op-000", "op-001"), ("cac-shanghai",))
    assert access.scope(OPERATOR) == Scope(("op-000",), ("op-000-compliance",))
    assert access.scope(AUDITOR) == Scope((), None)  # every query record, no operator's row
    assert access.scope(OPS) is None  # aggregates only


def test_an_auditor_token_can_be_made(tmp_path: Path) -> None:
    path = tmp_path / "access.yaml"
    token = add_principal(path, "dpa-oversight", "auditor")
    assert Access.load(path).authenticate(token) == AUDITOR
