"""Renders a kustomization as `kubectl kustomize` does, for the subset of
kustomize that deploy/k8s uses, so the tests need no kubectl or
kustomize binary (neither is packaged for Debian 12 in a version that
knows components).

Supported, with kustomize's semantics:

- `Kustomization` (`kustomize.config.k8s.io/v1beta1`) and `Component`
  (`v1alpha1`) files named kustomization.yaml;
- `resources`: YAML files (several documents each) and directories
  holding a kustomization;
- `components`: directories holding a Component, applied in order after
  the kustomization's own resources;
- `namespace`: set on every namespaced object;
- `labels`: `pairs` added to every object's labels, with
  `includeTemplates` to pod templates too; `includeSelectors: true` is
  refused (selectors are immutable, and the manifests never use it);
- `images`: `name` with `newName`, `newTag` or `digest`;
- `patches`: strategic-merge patches (`path` or inline `patch`) matched
  by kind and name, merging lists by their Kubernetes merge keys
  (containers, env, volumes, volume mounts, container ports).

Anything else in a kustomization is an error rather than silently
ignored, so the render never differs from kustomize's without saying so.
Transformers run in kustomize's order: patches, namespace, labels,
images. Objects are emitted in kustomize's legacy order.

Usage: python render.py <directory>   (YAML documents on stdout)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "labels",
    "images",
    "patches",
}

# Kinds without a namespace (of those a kustomization here could hold).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
}

# Kinds whose pod template is at spec.template.
TEMPLATED = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}

# kustomize's legacy output order: these kinds first, in this order, the
# webhooks last, everything else between, by group/version/kind and name.
ORDER_FIRST = [
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
]
ORDER_LAST = ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]

# Strategic-merge keys of the lists a patch here may touch.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class RenderError(Exception):
    """A kustomization this renderer cannot render as kustomize would."""


def load_documents(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise RenderError(f"{path}: a document without apiVersion and kind")
    return docs


def read_kustomization(directory: Path, kind: str) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise RenderError(f"{directory}: no kustomization.yaml")
    with path.open() as f:
        spec = yaml.safe_load(f) or {}
    unknown = set(spec) - KUSTOMIZATION_KEYS
    if unknown:
        raise RenderError(f"{path}: not supported by this renderer: {sorted(unknown)}")
    if spec.get("kind", "Kustomization") != kind:
        raise RenderError(f"{path}: expected kind {kind}, found {spec.get('kind')}")
    return spec


def object_id(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])


def add(objects: list[dict[str, Any]], new: list[dict[str, Any]], where: Path) -> None:
    seen = {object_id(o) for o in objects}
    for obj in new:
        if object_id(obj) in seen:
            raise RenderError(f"{where}: {object_id(obj)} is defined twice")
        seen.add(object_id(obj))
        objects.append(obj)


def build(directory: Path, kind: str = "Kustomization", objects: list | None = None) -> list:
    """The objects of the kustomization (or component) in `directory`;
    a component transforms `objects`, what its parent built so far."""
    spec = read_kustomization(directory, kind)
    objects = [] if objects is None else objects
    for entry in spec.get("resources", []):
        path = directory / entry
        if path.is_dir():
            add(objects, build(path), path)
        elif path.is_file():
            add(objects, load_documents(path), path)
        else:
            raise RenderError(f"{directory}: resource {entry} not found")
    for entry in spec.get("components", []):
        path = directory / entry
        if not path.is_dir():
            raise RenderError(f"{directory}: component {entry} not found")
        objects = build(path, "Component", objects)
    for patch in spec.get("patches", []):
        apply_patch(objects, patch, directory)
    if "namespace" in spec:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for labels in spec.get("labels", []):
        apply_labels(objects, labels, directory)
    for image in spec.get("images", []):
        apply_image(objects, image)
    return objects


def apply_labels(objects: list, labels: dict[str, Any], where: Path) -> None:
    unknown = set(labels) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown or labels.get("includeSelectors"):
        raise RenderError(f"{where}: labels: only pairs and includeTemplates are supported")
    pairs = labels.get("pairs", {})
    for obj in objects:
        obj.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if not labels.get("includeTemplates"):
            continue
        spec = obj.get("spec") or {}
        if obj["kind"] in TEMPLATED and "template" in spec:
            spec["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if obj["kind"] == "CronJob":
            job = spec["jobTemplate"]
            job.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
            template = job["spec"]["template"]
            template.setdefault("metadata", {}).setdefault("labels", {}).update(pairs)


def pod_specs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = obj.get("spec") or {}
    if obj["kind"] == "Pod":
        return [spec]
    if obj["kind"] in TEMPLATED:
        return [spec["template"]["spec"]]
    if obj["kind"] == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def split_image(image: str) -> tuple[str, str]:
    """`name` and the rest (`:tag`, `@digest`) of an image reference."""
    if "@" in image:
        name, digest = image.split("@", 1)
        return name, "@" + digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon:]
    return image, ""


def apply_image(objects: list, image: dict[str, Any]) -> None:
    for obj in objects:
        for pod in pod_specs(obj):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, rest = split_image(container["image"])
                if name != image["name"]:
                    continue
                new_name = image.get("newName", name)
                if "digest" in image:
                    rest = "@" + image["digest"]
                elif "newTag" in image:
                    rest = ":" + str(image["newTag"])
                container["image"] = new_name + rest


def merge(target: Any, patch: Any, key: str = "") -> Any:
    """`patch` merged into `target` as a strategic-merge patch would."""
    if isinstance(patch, dict) and isinstance(target, dict):
        if any(k.startswith("$") for k in patch):
            raise RenderError(f"patch directives are not supported: {list(patch)}")
        merged = dict(target)
        for k, v in patch.items():
            if v is None:
                merged.pop(k, None)
            elif k in merged:
                merged[k] = merge(merged[k], v, k)
            else:
                merged[k] = copy.deepcopy(v)
        return merged
    if isinstance(patch, list) and isinstance(target, list) and key in MERGE_KEYS:
        # Items the target lacks come first, as kustomize puts them.
        merge_key = MERGE_KEYS[key]
        merged = list(target)
        added = []
        for item in patch:
            at = next(
                (i for i, t in enumerate(merged) if t.get(merge_key) == item.get(merge_key)),
                None,
            )
            if at is None:
                added.append(copy.deepcopy(item))
            else:
                merged[at] = merge(merged[at], item)
        return added + merged
    return copy.deepcopy(patch)


def apply_patch(objects: list, entry: dict[str, Any], directory: Path) -> None:
    if set(entry) - {"path", "patch"}:
        raise RenderError(f"{directory}: patches: only path or patch is supported: {entry}")
    if "path" in entry:
        docs = load_documents(directory / entry["path"])
    else:
        docs = [d for d in yaml.safe_load_all(entry["patch"]) if d is not None]
    for patch in docs:
        meta = patch.get("metadata") or {}
        matches = [
            i
            for i, obj in enumerate(objects)
            if obj["kind"] == patch["kind"]
            and obj["metadata"]["name"] == meta.get("name")
            and meta.get("namespace", obj["metadata"].get("namespace")) == obj["metadata"].get("namespace")
        ]
        if len(matches) != 1:
            raise RenderError(
                f"{directory}: patch of {patch['kind']}/{meta.get('name')} matches {len(matches)} objects"
            )
        objects[matches[0]] = merge(objects[matches[0]], patch)


def sort_key(obj: dict[str, Any]) -> tuple:
    kind = obj["kind"]
    if kind in ORDER_FIRST:
        rank = ORDER_FIRST.index(kind)
    elif kind in ORDER_LAST:
        rank = len(ORDER_FIRST) + 1 + ORDER_LAST.index(kind)
    else:
        rank = len(ORDER_FIRST)
    api_version = obj["apiVersion"]
    group, _, version = api_version.rpartition("/")
    meta = obj["metadata"]
    return (rank, f"{group}_{version}_{kind}", meta.get("namespace", ""), meta["name"])


def render(directory: str | Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize <directory>` prints, in its order."""
    return sorted(build(Path(directory)), key=sort_key)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        objects = render(argv[1])
    except RenderError as error:
        print(f"render: {error}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(objects, sys.stdout, sort_keys=True, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
