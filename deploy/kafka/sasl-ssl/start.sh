#!/usr/bin/env bash
# The compose broker with SASL/SCRAM over TLS: format its storage once with the SCRAM users
# (the arguments come from a file in the secrets volume, so no password is on a command line),
# then start it.
set -euo pipefail
secrets=/etc/kafka/secrets
config=/etc/frtwatch/kafka/server.properties
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
  --cluster-id "$(cat "$secrets/kafka-cluster-id")" -c "$config" "@$secrets/kafka-scram-users.args"
exec /opt/kafka/bin/kafka-server-start.sh "$config"
