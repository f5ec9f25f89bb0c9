"""Kafka topic names of contract v1: the one place they are spelled."""

EVENTS = "frt.events.v1"
VIOLATIONS = "frt.violations.v1"
DEADLETTER = "frt.deadletter.v1"

ALL = (EVENTS, VIOLATIONS, DEADLETTER)

# frtwatch's own topics, not part of the contract: the processor's lanes (events re-keyed by
# operator), the events it accepted, in bundles, for the audit log, and the regulators' API's
# record of every query it answered or refused, also for the audit log.
LANES = "frtwatch-events-by-operator"
ACCEPTED = "frtwatch-events-accepted"
QUERIES = "frtwatch-audit-queries"


def event_key(operator_id: str, device_id: str | None) -> bytes:
    """The message key of an input event: its device, or for back-office events its operator."""
    return (device_id or operator_id).encode()
