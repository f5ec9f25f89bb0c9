"""Least privilege on Kafka: what each role's principal may do, granted as ACLs to the
StandardAuthorizer (with no ACL, nothing is allowed: allow.everyone.if.no.acl.found=false).

A device could otherwise write the processor's accepted events, violations or query records,
which the audit sink logs as if the gate had passed them. So a role gets the operations its
clients perform on the resources they use, and nothing else. The admin is a super user, as
the brokers are: it grants the ACLs, and who may alter ACLs may give itself any right anyway.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from contracts import topics
from core.kafka_security import KafkaSecurity, KafkaSecurityError, Role

# The processor's faust app id (stream_processors.app): its consumer group, and the prefix of
# the topics faust makes for it (table changelogs, the leader assignor's topic).
PROCESSOR_APP = "frtwatch-processor"
ROUTER_GROUP = "frtwatch-router"  # the router's consumer group (stream_processors.app)
AUDIT_GROUP = "frtwatch-audit"  # the audit sink's (audit.sink.AuditSink.group_id)


@dataclass(frozen=True)
class Grant:
    operation: str  # READ, WRITE, CREATE (a Kafka ACL operation; READ and WRITE imply DESCRIBE)
    resource: str  # TOPIC or GROUP
    name: str
    prefixed: bool = False  # every name that starts with ``name``


def _topic(name: str, *operations: str, prefixed: bool = False) -> list[Grant]:
    return [Grant(operation, "TOPIC", name, prefixed) for operation in operations]


def _group(name: str) -> Grant:
    return Grant("READ", "GROUP", name)


GRANTS: dict[Role, list[Grant]] = {
    Role.DEVICE: _topic(topics.EVENTS, "WRITE"),
    Role.PROCESSOR: [
        *_topic(topics.EVENTS, "READ"),  # the router
        *_topic(topics.LANES, "READ", "WRITE", "CREATE"),  # faust declares its topics on start
        *_topic(topics.ACCEPTED, "WRITE", "CREATE"),
        *_topic(topics.VIOLATIONS, "READ", "WRITE"),  # a lane's new owner reads back what was published
        *_topic(topics.DEADLETTER, "WRITE"),
        *_topic(f"{PROCESSOR_APP}-", "READ", "WRITE", "CREATE", prefixed=True),
        _group(PROCESSOR_APP),
        _group(ROUTER_GROUP),
    ],
    Role.AUDIT: [
        *_topic(topics.ACCEPTED, "READ"),
        *_topic(topics.VIOLATIONS, "READ"),
        *_topic(topics.DEADLETTER, "READ"),
        *_topic(topics.QUERIES, "READ"),
        _group(AUDIT_GROUP),
    ],
    Role.API: _topic(topics.QUERIES, "WRITE"),
    Role.ADMIN: [],  # a super user
}

# The topics `frtwatch process` makes sure exist before it starts: those it may see.
PROCESSOR_TOPICS = (topics.EVENTS, topics.VIOLATIONS, topics.DEADLETTER, topics.LANES, topics.ACCEPTED)


def super_users(broker_user: str, node_name: str) -> str:
    """server.properties' super.users: the brokers (SCRAM between brokers, their certificate on
    the controller quorum) and the admin."""
    return ";".join(f"User:{name}" for name in (broker_user, f"CN={node_name}", Role.ADMIN.principal))


def acls(principal: str, grants: Iterable[Grant]) -> list[Any]:
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return [
        ACL(
            f"User:{principal}",
            "*",
            ACLOperation[grant.operation],
            ACLPermissionType.ALLOW,
            ResourcePattern(
                ResourceType[grant.resource],
                grant.name,
                ACLResourcePatternType.PREFIXED if grant.prefixed else ACLResourcePatternType.LITERAL,
            ),
        )
        for grant in grants
    ]


def grant_roles(
    bootstrap_servers: str, admin: KafkaSecurity, principals: dict[str, Role] | None = None
) -> int:
    """Grant each principal (default: each role's own) its role's ACLs, as the admin
    (idempotent); return how many."""
    if principals is None:
        principals = {role.principal: role for role in Role}
    wanted = [acl for principal, role in principals.items() for acl in acls(principal, GRANTS[role])]
    _with_admin(bootstrap_servers, admin, lambda client: _create(client, wanted))
    return len(wanted)


def add_principal(
    bootstrap_servers: str, admin: KafkaSecurity, username: str, role: Role, password: str
) -> None:
    """A SCRAM user of its own (created or its password replaced) with ``role``'s rights: one
    per device or back office, say."""
    from kafka.admin import UserScramCredentialUpsertion

    if role == Role.ADMIN:
        raise KafkaSecurityError(
            f"{Role.ADMIN.principal} is the admin by name (super.users): no ACL makes another"
        )

    upsert = UserScramCredentialUpsertion(username, admin.mechanism, password)

    def run(client: Any) -> None:
        failed = client.alter_user_scram_credentials([upsert])[username]
        if failed:
            raise RuntimeError(f"Kafka refused the SCRAM user {username}: {failed}")
        _create(client, acls(username, GRANTS[role]))

    _with_admin(bootstrap_servers, admin, run)


def _create(client: Any, wanted: list[Any]) -> None:
    failed = client.create_acls(wanted)["failed"]
    if failed:
        raise RuntimeError(f"Kafka refused {len(failed)} ACLs: {failed[0]}")


def _with_admin(bootstrap_servers: str, admin: KafkaSecurity, run: Any) -> None:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers, client_id="frtwatch-admin", **admin.kafka_python()
    )
    try:
        run(client)
    finally:
        client.close()
