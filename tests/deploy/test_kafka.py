"""Topics, ACLs and lag scaling agree with the code: a KafkaTopic for every topic of
services/common/topics.py, configured as the code and contracts/asyncapi.yaml say; a KafkaUser
per service allowed exactly what its producers, consumer groups and followers do; KEDA scaling
each consumer on a group it really has, never past the topic's partitions."""

import json
import uuid

import pytest
import yaml
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.common.topics import ALL_TOPICS
from tests.deploy import manifests as m

ASYNCAPI = yaml.safe_load((m.ROOT / "contracts" / "asyncapi.yaml").read_text())
KEDA_KAFKA = json.loads((m.DEPLOY / "crds" / "keda-kafka-scaler-parameters.json").read_text())
SERVICES = m.services()


def _prefix(objects) -> str:
    return objects.shared_config["PANUI_TOPIC_PREFIX"]


def _topics(objects) -> dict[str, dict]:
    return {t["spec"]["topicName"]: t for t in objects.of("KafkaTopic")}


def _channel(spec) -> dict:
    # The AsyncAPI document names topics with the default prefix.
    return next(c for c in ASYNCAPI["channels"].values() if c["address"] == f"panui.{spec.name}")


def _asyncapi_ops(service: str, action: str) -> set[str]:
    out = set()
    for op in ASYNCAPI["operations"].values():
        if op["x-panui-service"] == service and op["action"] == action:
            channel = ASYNCAPI["channels"][op["channel"]["$ref"].rsplit("/", 1)[1]]
            out.add(channel["address"].removeprefix("panui."))
    return out


def test_a_kafka_topic_for_every_topic(objects):
    expected = {spec.full_name(_prefix(objects)) for spec in ALL_TOPICS}
    assert set(_topics(objects)) == expected


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.name)
def test_topic_configuration_agrees_with_code_and_contract(objects, spec):
    config = objects.shared_config
    topic = _topics(objects)[spec.full_name(_prefix(objects))]["spec"]
    # What the services would create themselves must be what Strimzi creates.
    assert topic["partitions"] == int(config["PANUI_TOPIC_PARTITIONS"])
    assert topic["replicas"] == int(config["PANUI_TOPIC_REPLICATION_FACTOR"])
    for key, value in spec.kafka_configs().items():
        assert str(topic["config"].get(key)) == value, f"{spec.name}: {key}"
    binding = _channel(spec)["bindings"]["kafka"]
    for key, value in binding.get("topicConfiguration", {}).items():
        expected = ",".join(value) if isinstance(value, list) else str(value)
        assert str(topic["config"].get(key)) == expected, f"{spec.name}: {key} differs from asyncapi"
    # The contract documents the local server; an overlay may have more partitions, never fewer
    # (keys would move between partitions), and dev has exactly the contract's.
    assert topic["partitions"] >= binding["partitions"]
    if objects.overlay == "dev":
        assert topic["partitions"] == binding["partitions"]
    # Durable: acks=all producers need a quorum that survives one broker down.
    isr = int(topic["config"]["min.insync.replicas"])
    assert 1 <= isr <= topic["replicas"]
    if topic["replicas"] >= 3:
        assert 2 <= isr <= topic["replicas"] - 1
    if topic["config"]["cleanup.policy"] == "delete":
        assert int(topic["config"]["retention.ms"]) > 0, "retention is explicit, never the broker's"


@pytest.mark.kafka
async def test_the_broker_accepts_every_topic_config(kafka_bootstrap):
    """Config names and values as a real broker checks them (CreateTopics, validate_only):
    a misspelt key such as min.insync.replica fails here, where the CRD schema takes any map."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        for overlay in m.OVERLAYS:
            for topic in m.Objects(overlay).of("KafkaTopic"):
                spec = topic["spec"]
                name = f"test-{uuid.uuid4().hex[:8]}.{spec['topicName']}"
                new = NewTopic(name, num_partitions=spec["partitions"], replication_factor=1,
                               topic_configs={k: str(v) for k, v in spec["config"].items()})
                response = await admin.create_topics([new], validate_only=True)
                errors = [error for error in response.topic_errors if error[1]]
                assert not errors, f"{overlay} {spec['topicName']}: {errors}"
    finally:
        await admin.close()


def _expected_acls(facts: m.ServiceFacts, produced: set[str]) -> set[tuple[str, str, str]]:
    acls = set()
    for topic in facts.ensured_topics:  # checked (Describe) or created at start-up when missing
        acls |= {("topic", topic, "Describe")} | ({("topic", topic, "Create")} if facts.creates_topics else set())
    acls |= {("topic", t, "Write") for t in produced}
    for group, topics in facts.groups.items():
        acls.add(("group", group, "Read"))
        acls |= {("topic", t, "Read") for t in topics}
    acls |= {("topic", t, "Read") for t in facts.followed}
    # An idempotent producer needs no more on Kafka >= 3.0 (Strimzi 1.x runs 4.x); a
    # transactional one writes and describes its transactional id.
    if facts.transactional_id:
        acls |= {("transactionalId", facts.transactional_id, op) for op in ("Write", "Describe")}
    return acls


def _granted(user: dict) -> set[tuple[str, str, str]]:
    granted = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*"
        assert resource.get("patternType", "literal") == "literal", "no prefix grants: exact names"
        granted |= {(resource["type"], resource.get("name", "kafka-cluster"), op) for op in acl["operations"]}
    return granted


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_may_do_exactly_what_its_code_does(objects, service_facts, service):
    facts = service_facts(objects, service)
    prefix = _prefix(objects)
    produced = {prefix + t for t in _asyncapi_ops(service, "send")}
    # The contract and the code name the same topics for this service.
    consumed = set().union(*facts.groups.values(), facts.followed)
    assert consumed == {prefix + t for t in _asyncapi_ops(service, "receive")}, service
    assert produced | consumed <= facts.ensured_topics, service
    deployment = objects.deployment(service)
    env = objects.container_env(m.main_container(deployment))
    username = env["PANUI_KAFKA_SASL_USERNAME"]["value"]
    user = objects.get("KafkaUser", username)
    assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    assert env["PANUI_KAFKA_SASL_PASSWORD"]["secretKeyRef"] == {"name": username, "key": "password"}
    expected, granted = _expected_acls(facts, produced), _granted(user)
    assert granted == expected, (f"{username}: missing {sorted(expected - granted)}, "
                                 f"not needed {sorted(granted - expected)}")


def test_every_kafka_user_and_topic_belongs_to_one_cluster(objects):
    clusters = {o["metadata"]["labels"]["strimzi.io/cluster"] for o in objects.of("KafkaTopic") + objects.of("KafkaUser")}
    assert len(clusters) == 1
    users = {u["metadata"]["name"] for u in objects.of("KafkaUser")}
    service_users = {objects.container_env(m.main_container(objects.deployment(s)))["PANUI_KAFKA_SASL_USERNAME"]["value"]
                     for s in SERVICES}
    keda_users = {objects.get("ConfigMap", ref["name"])["data"][ref["key"]]
                  for ta in objects.of("TriggerAuthentication") for ref in ta["spec"].get("configMapTargetRef", [])
                  if ref["parameter"] == "username"}
    assert users == service_users | keda_users, "every KafkaUser is someone's, and only one's"


@pytest.mark.parametrize("service", SERVICES)
def test_lag_scaling_follows_a_real_group_within_its_partitions(objects, service_facts, service):
    name = objects.deployment(service)["metadata"]["name"]
    scaled = [s for s in objects.of("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == name]
    if not scaled:
        return  # scaled on CPU (test_workloads)
    facts = service_facts(objects, service)
    spec = scaled[0]["spec"]
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    for trigger in spec["triggers"]:
        assert trigger["type"] == "kafka"
        meta = trigger["metadata"]
        assert set(meta) <= set(KEDA_KAFKA["triggerMetadata"]), set(meta) - set(KEDA_KAFKA["triggerMetadata"])
        assert meta["consumerGroup"] in facts.groups, f"{name}: {meta['consumerGroup']} is not its group"
        assert meta["topic"] in facts.groups[meta["consumerGroup"]]
        assert meta["bootstrapServers"] == objects.shared_config["KAFKA_BOOTSTRAP_SERVERS"]
        partitions = _topics(objects)[meta["topic"]]["spec"]["partitions"]
        assert spec["maxReplicaCount"] <= partitions, f"{name}: more replicas than partitions"
        assert meta.get("allowIdleConsumers", "false") == "false"
        assert meta["offsetResetPolicy"] == "earliest", "a new group starts from the beginning (code)"
        objects.get("TriggerAuthentication", trigger["authenticationRef"]["name"])


def test_keda_may_only_describe_what_it_scales_on(objects):
    expected = set()
    for scaled in objects.of("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            expected |= {("group", trigger["metadata"]["consumerGroup"], "Describe"),
                         ("topic", trigger["metadata"]["topic"], "Describe")}
    for auth in objects.of("TriggerAuthentication"):
        params = [r["parameter"] for r in auth["spec"].get("secretTargetRef", []) + auth["spec"].get("configMapTargetRef", [])]
        assert set(params) <= set(KEDA_KAFKA["authParams"]), set(params) - set(KEDA_KAFKA["authParams"])
        password = next(r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "password")
        assert password["key"] == "password"
        assert _granted(objects.get("KafkaUser", password["name"])) == expected
