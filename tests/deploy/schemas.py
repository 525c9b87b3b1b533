"""Strict offline validation: built-in kinds against the Kubernetes schemas kubernetes-validate
ships (its `-strict` variants reject unknown fields), custom resources against the openAPIV3
schemas of the CRDs vendored in deploy/crds/, made strict the same way: an object schema that
lists its properties and does not say `x-kubernetes-preserve-unknown-fields` rejects any other
field, as the API server's strict field validation (`kubectl apply --validate=strict`) does."""

import copy
import functools
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from importlib_resources import files
from referencing import Registry, Resource

from tests.deploy.manifests import DEPLOY

CRDS = DEPLOY / "crds"
# The oldest Kubernetes the manifests claim (preStop sleep, matchLabelKeys) and the newest
# kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.utils.major_minor(kubernetes_validate.utils.latest_version()))
_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaError(Exception):
    pass


@functools.cache
def vendored_crds() -> dict[tuple[str, str], tuple[Path, dict]]:
    """{(apiVersion, kind): (file, openAPIV3Schema)} for every served version of every CRD."""
    found = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if version.get("served"):
                    found[(f"{group}/{version['name']}", kind)] = (path, version["schema"]["openAPIV3Schema"])
    return found


@functools.cache
def _object_meta(k8s_version: str) -> dict:
    """The strict definitions kubernetes-validate ships (ObjectMeta and what it refers to)."""
    defs_path = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{k8s_version}.0-local-strict" / "_definitions.json"
    return json.loads(defs_path.read_text())["$defs"]


def _strict(schema: dict) -> dict:
    schema = dict(schema)
    if schema.pop("x-kubernetes-int-or-string", False):
        schema.pop("type", None)
        schema.pop("anyOf", None)
        schema["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    schema.pop("x-kubernetes-validations", None)  # CEL rules: not evaluated here
    if "properties" in schema:
        schema["properties"] = {k: _strict(v) for k, v in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields") and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _strict(schema["additionalProperties"])
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"])
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(s) for s in schema[key]]
    return schema


@functools.cache
def _builtin_validator(api_version: str, kind: str, k8s_version: str) -> jsonschema.Draft202012Validator | None:
    """kubernetes_validate.validate(strict=True)'s validator, built once per kind (it re-reads
    the multi-megabyte definitions on every call)."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    directory = files("kubernetes_validate") / "kubernetes-json-schema" / f"v{k8s_version}.0-local-strict"
    path = directory / f"{kind.lower()}-{group_version}.json"
    if not path.is_file():
        return None
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(json.loads((directory / "_definitions.json").read_text())) @ registry
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _crd_validator(api_version: str, kind: str, k8s_version: str) -> jsonschema.Draft202012Validator:
    _path, schema = vendored_crds()[(api_version, kind)]
    strict = _strict(copy.deepcopy(schema))
    strict["properties"]["metadata"] = {"$ref": f"#/$defs/{_OBJECT_META}"}
    strict["$defs"] = _object_meta(k8s_version)
    return jsonschema.Draft202012Validator(strict)


def is_builtin(obj: dict) -> bool:
    return (obj["apiVersion"], obj["kind"]) not in vendored_crds()


def validate(obj: dict, k8s_version: str) -> None:
    """Raise SchemaError naming the object and the failing path, or return."""
    name = f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
    if is_builtin(obj):
        validator = _builtin_validator(obj["apiVersion"], obj["kind"], k8s_version)
        if validator is None:
            raise SchemaError(f"{name}: no schema for {obj['apiVersion']} (vendor its CRD in deploy/crds?)")
    else:
        validator = _crd_validator(obj["apiVersion"], obj["kind"], k8s_version)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        raise SchemaError("; ".join(f"{name}: {'.'.join(map(str, e.path))}: {e.message}" for e in errors[:5]))
