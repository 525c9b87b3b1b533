"""The lag monitor expects exactly the groups the services' ConsumerWorkers join
(topics.CONSUMER_GROUPS): read from the source, so a new or renamed worker cannot be missed."""

import ast
from pathlib import Path

from services.common import topics

SERVICES = Path(__file__).resolve().parents[2] / "services"
SPECS = {name: value for name, value in vars(topics).items() if isinstance(value, topics.TopicSpec)}
GROUP_SPECS = {name: value for name, value in vars(topics).items()
               if isinstance(value, topics.ConsumerGroupSpec)}


def _group_name(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Attribute) and node.attr == "name" and isinstance(node.value, ast.Name):
        return GROUP_SPECS[node.value.id].name  # e.g. DISPATCH_NOTICES.name
    raise AssertionError(f"cannot read a group name from {ast.unparse(node)}")


def _topic_names(node: ast.expr) -> tuple[str, ...]:
    if isinstance(node, ast.Attribute) and node.attr == "topics" and isinstance(node.value, ast.Name):
        return tuple(t.name for t in GROUP_SPECS[node.value.id].topics)
    assert isinstance(node, ast.List | ast.Tuple), ast.unparse(node)
    return tuple(SPECS[element.id].name for element in node.elts)


def _worker_calls() -> list[tuple[Path, dict[str, ast.expr]]]:
    calls = []
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ConsumerWorker":
                calls.append((path, {**dict(zip(("settings", "group", "topics"), node.args, strict=False)),
                                     **{k.arg: k.value for k in node.keywords}}))
    return calls


def consumer_workers() -> dict[str, tuple[str, ...]]:
    return {_group_name(args["group"]): _topic_names(args["topics"]) for _path, args in _worker_calls()}


def test_every_consumer_worker_group_is_a_system_group_with_its_topics():
    workers = consumer_workers()
    assert workers, "no ConsumerWorker found under services/"
    assert workers == {g.name: tuple(t.name for t in g.topics) for g in topics.CONSUMER_GROUPS}


def test_workers_name_their_group_by_its_spec_never_a_literal():
    # A literal would still pass the test above, but could drift from the spec unnoticed
    # where a copy of it is made (deploy ACLs, KEDA triggers, the lag monitor).
    for path, args in _worker_calls():
        group, topics_arg = args["group"], args["topics"]
        where = f"{path.relative_to(SERVICES.parent)}:{group.lineno}"
        assert (isinstance(group, ast.Attribute) and group.attr == "name"
                and isinstance(group.value, ast.Name) and group.value.id in GROUP_SPECS), \
            f"{where}: group {ast.unparse(group)} is not a topics.ConsumerGroupSpec's .name"
        assert (isinstance(topics_arg, ast.Attribute) and topics_arg.attr == "topics"
                and isinstance(topics_arg.value, ast.Name) and topics_arg.value.id == group.value.id), \
            f"{where}: topics {ast.unparse(topics_arg)} are not {group.value.id}.topics"
