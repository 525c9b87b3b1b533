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


def consumer_workers() -> dict[str, tuple[str, ...]]:
    found = {}
    for path in SERVICES.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ConsumerWorker":
                args = {**dict(zip(("settings", "group", "topics"), node.args, strict=False)),
                        **{k.arg: k.value for k in node.keywords}}
                found[_group_name(args["group"])] = _topic_names(args["topics"])
    return found


def test_every_consumer_worker_group_is_a_system_group_with_its_topics():
    workers = consumer_workers()
    assert workers, "no ConsumerWorker found under services/"
    assert workers == {g.name: tuple(t.name for t in g.topics) for g in topics.CONSUMER_GROUPS}
