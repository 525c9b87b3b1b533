"""Every Kafka topic Pānui uses: name, partitioning, configuration and key — in one place.

contracts/asyncapi.yaml documents the same topics; tests/contracts checks the two agree.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without the deployment prefix
    key: str  # what the message key is; never personal data
    compacted: bool = False
    configs: dict[str, str] = field(default_factory=dict)

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"

    def kafka_configs(self) -> dict[str, str]:
        base = {"cleanup.policy": "compact" if self.compacted else "delete"}
        return base | self.configs


# The pipeline topics keep 30 days (an incident's intake, review and delivery), set explicitly
# rather than left to the broker's default; their personal fields are sealed with per-incident
# data keys, so a purge shreds them sooner anyway (the deployment's KafkaTopics agree).
PIPELINE_RETENTION = {"retention.ms": str(30 * 24 * 3600 * 1000)}

# Keyed by incident: one incident's records, withdrawals and completions stay in order on one
# partition, which the release policy relies on.
AFFECTED_RECORDS = TopicSpec("affected-records.v1", key="incident_id", configs=PIPELINE_RETENTION)
# Latest state of each incident (content, expected agencies, release policy): compacted.
INCIDENTS = TopicSpec("incidents.v1", key="incident_id", compacted=True)
# One notice (or amendment) per person, keyed by the opaque person id.
NOTICES = TopicSpec("notices.v1", key="person_id", configs=PIPELINE_RETENTION)
# Every delivery state change, keyed by notice id.
DELIVERY_EVENTS = TopicSpec("delivery-events.v1", key="notice_id", configs=PIPELINE_RETENTION)

# Messages a consumer could not decode or apply (services/common/deadletters.py), keyed like
# their origin message. Kept 30 days — longer than the pipeline topics' broker default — so
# ops can inspect and replay them; the original bytes in them are as sealed as on their topic.
DEAD_LETTERS = TopicSpec("dead-letters.v1", key="origin.key",
                         configs={"retention.ms": str(30 * 24 * 3600 * 1000)})

# Incidents' data keys (wrapped by the purpose's KEK) and lifecycle: compacted, and compacted
# soon — a purged incident's key messages are tombstoned, and the log cleaner must remove the
# wrapped keys (then the tombstones) within hours, not after the broker's week-long segments.
_SHRED_SOON = {"segment.ms": str(3600 * 1000), "min.cleanable.dirty.ratio": "0.01",
               "delete.retention.ms": str(3600 * 1000)}
# From intake: the records data keys (key incident_id/key_id), closed and purged (incident_id).
INCIDENT_LIFECYCLE = TopicSpec("incident-lifecycle.v1", key="incident_id or incident_id/key_id",
                               compacted=True, configs=_SHRED_SOON)
# From dedupe: the notices data keys (key incident_id/key_id), for dispatch.
NOTICE_KEYS = TopicSpec("notice-keys.v1", key="incident_id/key_id", compacted=True,
                        configs=_SHRED_SOON)

ALL_TOPICS = (AFFECTED_RECORDS, INCIDENTS, NOTICES, DELIVERY_EVENTS, DEAD_LETTERS,
              INCIDENT_LIFECYCLE, NOTICE_KEYS)


@dataclass(frozen=True)
class ConsumerGroupSpec:
    """A consumer group of the system and the topics it reads. The broker-side id is
    `ServiceSettings.consumer_group(name)`, i.e. the deployment's topic prefix + name."""

    name: str  # without the deployment prefix
    topics: tuple[TopicSpec, ...]

    def full_name(self, prefix: str) -> str:
        return f"{prefix}{self.name}"


# The groups the services' ConsumerWorkers join (the incident followers use no group). The lag
# monitor expects every one of them: a group missing from the broker is reported ERR.
DEDUPE_AFFECTED_RECORDS = ConsumerGroupSpec("dedupe.affected-records", (AFFECTED_RECORDS,))
DISPATCH_NOTICES = ConsumerGroupSpec("dispatch.notices", (NOTICES,))
DISPATCH_INCIDENTS = ConsumerGroupSpec("dispatch.incidents", (INCIDENTS,))

CONSUMER_GROUPS = (DEDUPE_AFFECTED_RECORDS, DISPATCH_NOTICES, DISPATCH_INCIDENTS)
