"""The named predicates policy packs build conditions from: the questions that need more than
a field's value (consent validity, the device's registration history, filing deadlines). A
field's value in a list is the language's own ``in`` (stream_processors/rules/plan.py).

Each takes the evaluation context. Its properties tell the engine what it needs, so the engine
names none of them: ``waits`` marks a question about the absence of an earlier event (a
consent, a registration), decided only after the grace period, when late arrivals have had
their chance; ``about_registration`` the question left when the device is still unregistered
then; ``per_pack`` one that reads its pack's name or parameters.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from contracts.events import RegistrySnapshot
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
    test: Callable[[Context], bool]
    waits: bool
    about_registration: bool
    per_pack: bool  # reads the pack's name or params: not shared between packs


PREDICATES: dict[str, Predicate] = {}
# Facts that a pack's parameters decide, noted per pack as events of a type arrive, before any
# is judged: (facts, pack name, pack params, event, event time).
Learner = Callable[[Facts, str, dict[str, Any], Any, datetime], None]
LEARNERS: dict[type, list[Learner]] = {}


def predicate(
    name: str, *, waits: bool = False, about_registration: bool = False, per_pack: bool = False
) -> Callable[[Callable[[Context], bool]], Callable[[Context], bool]]:
    def register(test: Callable[[Context], bool]) -> Callable[[Context], bool]:
        PREDICATES[name] = Predicate(test, waits, about_registration, per_pack)
        return test

    return register


def learns(event_type: type) -> Callable[[Learner], Learner]:
    def register(learn: Learner) -> Learner:
        LEARNERS.setdefault(event_type, []).append(learn)
        return learn

    return register


# -- the event itself ----------------------------------------------------------------------------


@predicate("has_subject")
def _has_subject(ctx: Context) -> bool:
    return getattr(ctx.event, "subject_ref", None) is not None


# -- consent (decided after the grace period) ----------------------------------------------------


@predicate("valid_consent", waits=True)
def _valid_consent(ctx: Context) -> bool:
    """The subject had a consent valid at the event's time (given, not expired or withdrawn)."""
    return bool(ctx.valid)


@predicate("consent_covers_purpose", waits=True)
def _consent_covers_purpose(ctx: Context) -> bool:
    return bool(ctx.covering)


@predicate("subject_is_minor", waits=True)
def _subject_is_minor(ctx: Context) -> bool:
    if getattr(ctx.event, "subject_minor", None) is True:
        return True
    consents = ctx.facts.subject_consents(ctx.event.operator_id, getattr(ctx.event, "subject_ref", None))
    return any(c.minor and c.granted_at <= ctx.at for c in consents)


@predicate("guardian_consent", waits=True)
def _guardian_consent(ctx: Context) -> bool:
    """A guardian's consent covers the purpose."""
    return any(c.kind == "guardian" for c in ctx.covering)


@predicate("separate_consent", waits=True)
def _separate_consent(ctx: Context) -> bool:
    """A consent given separately covers the purpose (a guardian's is a minor's separate consent)."""
    return any(c.kind in ("separate", "guardian") for c in ctx.covering)


@predicate("separate_consent_any_purpose", waits=True)
def _separate_consent_any_purpose(ctx: Context) -> bool:
    return any(c.kind in ("separate", "guardian") for c in ctx.valid)


@predicate("consent_for_device_purposes", waits=True)
def _consent_for_device_purposes(ctx: Context) -> bool:
    """A valid consent shares a purpose with the device (any, when a back office keeps it)."""
    purposes = ctx.device_fact("purposes")
    if purposes is None:
        return bool(ctx.valid)
    return any(c.purposes & set(purposes) for c in ctx.valid)


@predicate("device_unregistered", waits=True, about_registration=True)
def _device_unregistered(ctx: Context) -> bool:
    return ctx.event.device_id is not None and ctx.device is None


# -- the device ----------------------------------------------------------------------------------


@predicate("device_facts_changed")
def _device_facts_changed(ctx: Context) -> bool:
    """A registration that is the device's first, or whose facts differ from the one before."""
    if ctx.device is None:
        return False
    return ctx.previous is None or any(ctx.previous.facts[f] != ctx.device.facts[f] for f in DEVICE_FACTS)


@predicate("device_offers_alternatives")
def _device_offers_alternatives(ctx: Context) -> bool:
    """The device offers another means than the face (a card, a PIN...)."""
    return bool(ctx.device_fact("alternatives"))


# -- the operator's registry ---------------------------------------------------------------------


@learns(RegistrySnapshot)
def _first_over_filing_threshold(
    facts: Facts, pack_name: str, params: dict[str, Any], event: Any, at: datetime
) -> None:
    threshold = params["filing_threshold"]
    if event.stored_individuals > threshold:
        facts.over_threshold(pack_name, event.operator_id, threshold, at)


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
