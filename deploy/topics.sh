#!/usr/bin/env bash
# Pre-create modelog's topics with exactly the configuration modelog itself creates them with
# (producers/wire/topics.py: ensure_topics). modelog creates missing topics on start anyway; use this
# when the principal modelog runs as may not create topics, or to review the settings first.
#
#   MODELOG_KAFKA_BOOTSTRAP=broker1:9092 deploy/topics.sh             # create (existing topics are left alone)
#   MODELOG_KAFKA_BOOTSTRAP=broker1:9092 deploy/topics.sh --dry-run   # print the commands only
#
# Reads the settings modelog reads, with this deployment's values as defaults:
#   MODELOG_KAFKA_BOOTSTRAP    (required) bootstrap servers
#   MODELOG_TOPIC_PREFIX       topic name prefix        (default modelog.)
#   MODELOG_TOPIC_PARTITIONS   partitions per topic     (default 6, as in deploy/modelog.env and the ConfigMap)
#   MODELOG_TOPIC_REPLICATION  replication factor       (default 3)
# and, for the tool itself:
#   KAFKA_TOPICS               path of kafka-topics.sh  (default: kafka-topics.sh on PATH;
#                                                        /opt/kafka/bin/kafka-topics.sh in apache/kafka)
#   KAFKA_COMMAND_CONFIG       a client properties file (SASL/TLS) passed as --command-config
#
# Every topic: retention.ms=-1 and retention.bytes=-1 (kept forever: the log is the audit trail),
# cleanup.policy=delete (never compacted), min.insync.replicas=2 when replicated (1 otherwise).
# The monitoring topic also allows records up to 16 MiB (max.message.bytes=16777216).
# MODELOG_TOPIC_PARTITIONS must stay what the processors are started with: the drift processor's
# changelog topics are created with that many partitions and must match the monitoring topic's.
set -euo pipefail

dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

bootstrap="${MODELOG_KAFKA_BOOTSTRAP:?set MODELOG_KAFKA_BOOTSTRAP to your brokers, e.g. broker1:9092,broker2:9092}"
prefix="${MODELOG_TOPIC_PREFIX-modelog.}"
partitions="${MODELOG_TOPIC_PARTITIONS:-6}"
replication="${MODELOG_TOPIC_REPLICATION:-3}"
kafka_topics="${KAFKA_TOPICS:-kafka-topics.sh}"

for value in "$partitions" "$replication"; do
  if ! [[ "$value" =~ ^[1-9][0-9]*$ ]]; then
    echo "MODELOG_TOPIC_PARTITIONS and MODELOG_TOPIC_REPLICATION must be integers >= 1 (got '$value')" >&2
    exit 2
  fi
done

# as ensure_topics: min.insync.replicas = min(2, replication) when replication > 1, else 1
if (( replication > 1 )); then min_isr=2; else min_isr=1; fi

for name in tracking deadletter monitoring alerts checkpoints; do
  cmd=("$kafka_topics" --bootstrap-server "$bootstrap" --create --if-not-exists
       --topic "${prefix}${name}" --partitions "$partitions" --replication-factor "$replication"
       --config retention.ms=-1 --config retention.bytes=-1 --config cleanup.policy=delete
       --config "min.insync.replicas=${min_isr}")
  if [[ "$name" == monitoring ]]; then
    cmd+=(--config max.message.bytes=16777216)
  fi
  if [[ -n "${KAFKA_COMMAND_CONFIG:-}" ]]; then
    cmd+=(--command-config "$KAFKA_COMMAND_CONFIG")
  fi
  if (( dry_run )); then
    printf '%q ' "${cmd[@]}"
    printf '\n'
  else
    "${cmd[@]}"
  fi
done
