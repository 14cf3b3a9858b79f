#!/usr/bin/env bash
# Kafka ACLs for a modelog deployment on a real cluster with SASL_SSL (docs/security.md, "On a real Kafka").
# Least privilege per kind of client; everything else is denied once the cluster runs an authorizer with
# allow.everyone.if.no.acl.found=false. Principals are the SASL user names your clients authenticate as.
#
#   MODELOG_KAFKA_BOOTSTRAP=broker1:9093 KAFKA_COMMAND_CONFIG=admin.properties deploy/kafka-acls.sh
#   ... deploy/kafka-acls.sh --dry-run        # print the commands only
#
# Settings (defaults in parentheses):
#   MODELOG_KAFKA_BOOTSTRAP   (required) the SASL_SSL listener
#   MODELOG_TOPIC_PREFIX      topic name prefix (modelog.)
#   KAFKA_ACL_WRITERS       comma-separated users that publish events: training jobs' SDK, monitoring
#                             services, the HTTP server, the CLI of people who change things (modelog-writer)
#   KAFKA_ACL_PROCESSOR     the user `modelog process` and `modelog drift` run as (modelog-processor)
#   MODELOG_PROCESSOR_ID      the processors' id, which prefixes their consumer groups and faust's internal
#                             topics (modelog-projector, as in modelog's settings)
#   KAFKA_ACL_AUDITORS      comma-separated users who run `modelog audit verify` (modelog-auditor)
#   KAFKA_ACL_CONSUMERS     comma-separated users of alert consumers (`modelog alerts tail`, the webhook
#                             forwarder) (modelog-alerts)
#   KAFKA_ACLS                path of kafka-acls.sh (kafka-acls.sh on PATH)
#   KAFKA_COMMAND_CONFIG      the admin client's properties file (SASL_SSL credentials), --command-config
#
# What each may do:
#   writers    WRITE + DESCRIBE on <prefix>tracking and <prefix>monitoring (publish events); nothing else:
#              they cannot read the log, write dead letters or alerts, or join the processors' groups.
#              Identity inside an event is still proven by its Ed25519 signature (decision 0015): a writer's
#              SASL user vouches only that it may publish at all.
#   processor  READ on every modelog topic; WRITE on <prefix>deadletter, <prefix>alerts, <prefix>tracking
#              (the decider's RequestDecided) and <prefix>checkpoints (its signed Merkle checkpoints); its consumer groups (<processor_id>-*, modelog-rebuild-*) and
#              the drift processor's changelog topics (<processor_id>-*, created by faust: all rights on those).
#   consumers  READ on <prefix>alerts; groups modelog-webhook-* and modelog-tail-*.
#   auditors   READ on every modelog topic, the checkpoints included (audit verify assigns partitions: no group).
# Nobody but an admin user (your own, outside modelog) may ALTER or DELETE topics: the log is the audit trail.
set -euo pipefail

dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

bootstrap="${MODELOG_KAFKA_BOOTSTRAP:?set MODELOG_KAFKA_BOOTSTRAP to your SASL_SSL listener, e.g. broker1:9093}"
prefix="${MODELOG_TOPIC_PREFIX-modelog.}"
writers="${KAFKA_ACL_WRITERS:-modelog-writer}"
processor="${KAFKA_ACL_PROCESSOR:-modelog-processor}"
consumers="${KAFKA_ACL_CONSUMERS:-modelog-alerts}"
auditors="${KAFKA_ACL_AUDITORS:-modelog-auditor}"
processor_id="${MODELOG_PROCESSOR_ID:-modelog-projector}"
kafka_acls="${KAFKA_ACLS:-kafka-acls.sh}"

acl() {
  local cmd=("$kafka_acls" --bootstrap-server "$bootstrap" --add --force "$@")
  if [[ -n "${KAFKA_COMMAND_CONFIG:-}" ]]; then
    cmd+=(--command-config "$KAFKA_COMMAND_CONFIG")
  fi
  if (( dry_run )); then
    printf '%q ' "${cmd[@]}"
    printf '\n'
  else
    "${cmd[@]}"
  fi
}

IFS=',' read -r -a writer_list <<< "$writers"
IFS=',' read -r -a consumer_list <<< "$consumers"
IFS=',' read -r -a auditor_list <<< "$auditors"

for user in "${writer_list[@]}"; do
  for topic in tracking monitoring; do
    acl --allow-principal "User:${user}" --operation Write --operation Describe --topic "${prefix}${topic}"
  done
  acl --allow-principal "User:${user}" --operation IdempotentWrite --cluster
done

for topic in tracking deadletter monitoring alerts checkpoints; do
  acl --allow-principal "User:${processor}" --operation Read --operation Describe --topic "${prefix}${topic}"
done
for topic in deadletter alerts tracking checkpoints; do
  acl --allow-principal "User:${processor}" --operation Write --topic "${prefix}${topic}"
done
acl --allow-principal "User:${processor}" --operation IdempotentWrite --cluster
for group in "${processor_id}-" modelog-rebuild-; do
  acl --allow-principal "User:${processor}" --operation Read --operation Describe --group "$group" \
      --resource-pattern-type prefixed
done
acl --allow-principal "User:${processor}" --operation All --topic "${processor_id}-" --resource-pattern-type prefixed

for user in "${consumer_list[@]}"; do
  acl --allow-principal "User:${user}" --operation Read --operation Describe --topic "${prefix}alerts"
  acl --allow-principal "User:${user}" --operation Read --group modelog-webhook- --resource-pattern-type prefixed
  acl --allow-principal "User:${user}" --operation Read --group modelog-tail- --resource-pattern-type prefixed
done

for user in "${auditor_list[@]}"; do
  for topic in tracking deadletter monitoring alerts checkpoints; do
    acl --allow-principal "User:${user}" --operation Read --operation Describe --topic "${prefix}${topic}"
  done
done
