"""contracts/asyncapi.yaml names every topic the code uses, with the same key, and every
message schema it references exists."""

import json

import yaml

from services.cli import contracts
from services.common.topics import ALL_TOPICS, DEAD_LETTERS

DOC = yaml.safe_load((contracts.CONTRACTS / "asyncapi.yaml").read_text())


def _channel_for(topic_name: str) -> dict:
    matches = [c for c in DOC["channels"].values() if c["address"] == f"panui.{topic_name}"]
    assert len(matches) == 1, f"asyncapi has no single channel for {topic_name}"
    return matches[0]


def _message(ref: str) -> dict:
    return DOC["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]


def test_asyncapi_is_version_3():
    assert DOC["asyncapi"].startswith("3.")


def test_every_topic_has_a_channel_with_its_key_and_cleanup_policy():
    for spec in ALL_TOPICS:
        channel = _channel_for(spec.name)
        policy = channel["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
        assert policy == [spec.kafka_configs()["cleanup.policy"]]
        for ref in channel["messages"].values():
            assert _message(ref)["bindings"]["kafka"]["key"]["description"] == spec.key


def test_every_message_schema_exists_and_is_referenced():
    referenced = set()
    for message in DOC["components"]["messages"].values():
        path = contracts.CONTRACTS / message["payload"]["$ref"]
        schema = json.loads(path.read_text())
        assert schema["title"] == message["name"] + ".v1"
        referenced.add(path.name)
    assert referenced == {f"{name}.json" for name in contracts.MESSAGE_SCHEMAS}


def _services(name: str, action: str) -> set[str]:
    return {op["x-panui-service"] for op in DOC["operations"].values()
            if op["channel"]["$ref"] == f"#/channels/{name}" and op["action"] == action}


def test_each_channel_has_one_producing_service_and_the_pipeline_channels_a_consumer():
    for name in DOC["channels"]:
        if name == "deadLetters":
            continue  # written by every consumer: the next test
        senders, receivers = _services(name, "send"), _services(name, "receive")
        assert len(senders) == 1, name
        assert not senders & receivers, f"{name}: a service consumes its own topic"
        if name != "deliveryEvents":  # delivery events are for ops and progress views
            assert receivers, name


def test_every_consuming_service_may_dead_letter_and_only_ops_read_dead_letters():
    consumers = {s for name in DOC["channels"] if name != "deadLetters"
                 for s in _services(name, "receive")}
    assert _services("deadLetters", "send") == consumers | {"panui-cli"}
    assert _services("deadLetters", "receive") == {"panui-cli"}
    topic = _channel_for(DEAD_LETTERS.name)["bindings"]["kafka"]["topicConfiguration"]
    assert topic["retention.ms"] == int(DEAD_LETTERS.configs["retention.ms"])
