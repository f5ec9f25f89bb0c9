"""The named predicates policy packs build conditions from.

Each takes the evaluation context and, when the pack passes one, an argument (a list of
values, resolved from the pack's named lists). ``waits=True`` marks predicates that look for
the absence of an earlier event (a consent, a registration): a rule using one is decided only
after the grace period, when late arrivals have had their chance.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.timestamps import parse_timestamp
from stream_processors.rules.calendar import working_days_deadline
from stream_processors.rules.facts import DEVICE_FACTS, Consent, Facts, Registration


@dataclass
class Context:
    """One event under judgement, with the facts as of its time."""

    event: Any  # a contracts.events struct
    at: datetime
    device: Registration | None  # for a registration: itself
    previous: Registration | None  # for a registration: the one before it
    facts: Facts
    pack_name: str
    params: dict[str, Any]
    _valid: list[Consent] | None = field(default=None, repr=False)

    @property
    def valid(self) -> list[Consent]:
        """The subject's consents valid at the event's time."""
        if self._valid is None:
            consents = self.facts.subject_consents(
                self.event.operator_id, getattr(self.event, "subject_ref", None)
            )
            self._valid = [c for c in consents if c.valid_at(self.at)]
        return self._valid

    @property
    def covering(self) -> list[Consent]:
        purpose = getattr(self.event, "purpose", None)
        return [c for c in self.valid if purpose in c.purposes]

    def device_fact(self, name: str) -> Any:
        return self.device.facts[name] if self.device is not None else None


@dataclass(frozen=True)
class Predicate:
    test: Callable[..., bool]
    takes_list: bool
    waits: bool
    per_pack: bool  # reads the pack's name or params: not shared between packs


PREDICATES: dict[str, Predicate] = {}


def predicate(
    name: str, *, takes_list: bool = False, waits: bool = False, per_pack: bool = False
) -> Callable[..., Any]:
    def register(test: Callable[..., bool]) -> Callable[..., bool]:
        PREDICATES[name] = Predicate(test, takes_list, waits, per_pack)
        return test

    return register


# -- the event itself ----------------------------------------------------------------------------


@predicate("has_subject")
def _has_subject(ctx: Context) -> bool:
    return getattr(ctx.event, "subject_ref", None) is not None


@predicate("legal_basis_in", takes_list=True)
def _legal_basis_in(ctx: Context, values: frozenset[str]) -> bool:
    return getattr(ctx.event, "legal_basis", None) in values


@predicate("purpose_in", takes_list=True)
def _purpose_in(ctx: Context, values: frozenset[str]) -> bool:
    return getattr(ctx.event, "purpose", None) in values


@predicate("purpose_not_in", takes_list=True)
def _purpose_not_in(ctx: Context, values: frozenset[str]) -> bool:
    return getattr(ctx.event, "purpose", None) not in values


@predicate("channel_in", takes_list=True)
def _channel_in(ctx: Context, values: frozenset[str]) -> bool:
    return getattr(ctx.event, "verification_channel", None) in values


@predicate("attributes_in", takes_list=True)
def _attributes_in(ctx: Context, values: frozenset[str]) -> bool:
    return any(attribute.lower() in values for attribute in ctx.event.attributes)


@predicate("media_kind_in", takes_list=True)
def _media_kind_in(ctx: Context, values: frozenset[str]) -> bool:
    return getattr(ctx.event, "kind", None) in values


@predicate("face_refused_and_denied")
def _face_refused_and_denied(ctx: Context) -> bool:
    return bool(ctx.event.face_refused) and ctx.event.outcome == "denied"


# -- consent (decided after the grace period) ----------------------------------------------------


@predicate("no_valid_consent", waits=True)
def _no_valid_consent(ctx: Context) -> bool:
    return not ctx.valid


@predicate("valid_consent_not_covering", waits=True)
def _valid_consent_not_covering(ctx: Context) -> bool:
    return bool(ctx.valid) and not ctx.covering


@predicate("subject_is_minor", waits=True)
def _subject_is_minor(ctx: Context) -> bool:
    if getattr(ctx.event, "subject_minor", None) is True:
        return True
    consents = ctx.facts.subject_consents(ctx.event.operator_id, getattr(ctx.event, "subject_ref", None))
    return any(c.minor and c.granted_at <= ctx.at for c in consents)


@predicate("no_guardian_consent", waits=True)
def _no_guardian_consent(ctx: Context) -> bool:
    return not any(c.kind == "guardian" for c in ctx.covering)


@predicate("no_separate_consent", waits=True)
def _no_separate_consent(ctx: Context) -> bool:
    """No covering consent given separately (a guardian's is a minor's separate consent)."""
    return not any(c.kind in ("separate", "guardian") for c in ctx.covering)


@predicate("no_separate_consent_any_purpose", waits=True)
def _no_separate_consent_any_purpose(ctx: Context) -> bool:
    return not any(c.kind in ("separate", "guardian") for c in ctx.valid)


@predicate("no_consent_for_device_purposes", waits=True)
def _no_consent_for_device_purposes(ctx: Context) -> bool:
    purposes = ctx.device_fact("purposes")
    if purposes is None:  # kept by a back office: any purpose of the operator's
        return not ctx.valid
    return not any(c.purposes & set(purposes) for c in ctx.valid)


@predicate("device_unregistered", waits=True)
def _device_unregistered(ctx: Context) -> bool:
    return ctx.event.device_id is not None and ctx.device is None


# -- the device ----------------------------------------------------------------------------------


@predicate("device_facts_changed")
def _device_facts_changed(ctx: Context) -> bool:
    """A registration that is the device's first, or whose facts differ from the one before."""
    if ctx.device is None:
        return False
    return ctx.previous is None or any(ctx.previous.facts[f] != ctx.device.facts[f] for f in DEVICE_FACTS)


@predicate("device_location_in", takes_list=True)
def _device_location_in(ctx: Context, values: frozenset[str]) -> bool:
    return ctx.device_fact("location_type") in values


@predicate("device_venue_in", takes_list=True)
def _device_venue_in(ctx: Context, values: frozenset[str]) -> bool:
    return ctx.device_fact("venue_type") in values


@predicate("device_storage_in", takes_list=True)
def _device_storage_in(ctx: Context, values: frozenset[str]) -> bool:
    return ctx.device_fact("storage") in values


@predicate("kept_off_device", takes_list=True)
def _kept_off_device(ctx: Context, remote: frozenset[str]) -> bool:
    """Kept by a back office (no device), or by a device whose storage is remote."""
    return ctx.device is None or ctx.device_fact("storage") in remote


@predicate("device_has_purpose", takes_list=True)
def _device_has_purpose(ctx: Context, values: frozenset[str]) -> bool:
    return bool(values & set(ctx.device_fact("purposes") or ()))


@predicate("device_purposes_beyond", takes_list=True)
def _device_purposes_beyond(ctx: Context, values: frozenset[str]) -> bool:
    return bool(set(ctx.device_fact("purposes") or ()) - values)


@predicate("device_public_place")
def _device_public_place(ctx: Context) -> bool:
    return ctx.device_fact("public_place") is True


@predicate("device_without_signage")
def _device_without_signage(ctx: Context) -> bool:
    return ctx.device_fact("signage") is False


@predicate("device_without_alternatives")
def _device_without_alternatives(ctx: Context) -> bool:
    return ctx.device is not None and not ctx.device_fact("alternatives")


@predicate("device_without_legal_mandate")
def _device_without_legal_mandate(ctx: Context) -> bool:
    return ctx.device_fact("legal_mandate") is None


# -- the operator's registry ---------------------------------------------------------------------


@predicate("over_filing_threshold", per_pack=True)
def _over_filing_threshold(ctx: Context) -> bool:
    return bool(ctx.event.stored_individuals > ctx.params["filing_threshold"])


@predicate("filing_overdue", per_pack=True)
def _filing_overdue(ctx: Context) -> bool:
    """Past the deadline counted from the operator's first snapshot over the threshold, and not
    filed by then."""
    threshold = ctx.params["filing_threshold"]
    first = ctx.facts.first_over.get((ctx.pack_name, ctx.event.operator_id, threshold))
    if first is None:
        return False
    deadline = working_days_deadline(first, ctx.params["filing_working_days"])
    filed_at = ctx.event.filed_at
    filed_in_time = filed_at is not None and parse_timestamp(filed_at) <= deadline
    return ctx.at > deadline and not filed_in_time
