import pytest

from producers.pseudonym import subject_ref

SECRET = b"operator-secret-0123456789"


def test_same_person_same_ref_and_no_raw_identity_in_it() -> None:
    ref = subject_ref("110101199003077578", SECRET)
    assert ref == subject_ref(" 110101199003077578 ", SECRET)  # normalised
    assert ref.startswith("sub-") and len(ref) == 36
    assert "110101199003077578" not in ref


def test_other_operators_cannot_link_refs() -> None:
    assert subject_ref("person-1", SECRET) != subject_ref("person-1", b"another-operator-secret!!")


def test_full_width_digits_normalise_to_the_same_ref() -> None:
    assert subject_ref("\uff11\uff12\uff13", SECRET) == subject_ref("123", SECRET)


def test_weak_secret_or_empty_identifier_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        subject_ref("x", b"short")
    with pytest.raises(ValueError, match="empty identifier"):
        subject_ref("   ", SECRET)
