"""Just enough of `kustomize build` for deploy/k8s, in Python, with no binary and no network.

It knows the kustomization fields deploy/k8s uses and refuses every other one (and any patch it
cannot apply exactly as kustomize would), so it never quietly builds something other than what
`kubectl apply -k` applies. test_k8s_manifests compares its output with `kubectl kustomize`
wherever kubectl is installed.

Supported: resources (files and directories), namespace, images, configMapGenerator and
secretGenerator (envs, literals; behavior create/merge/replace; options.labels and
disableNameSuffixHash), and patches: strategic-merge patches made of maps only, and JSON 6902
patches with a target. Generated names get kustomize's content hash, and references to them
from pod templates follow.
"""

import base64
import copy
import json
import re
from hashlib import sha256
from pathlib import Path

import jsonpatch
import yaml

FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "images",
    "configMapGenerator",
    "secretGenerator",
    "patches",
}
GENERATOR_FIELDS = {"name", "behavior", "envs", "literals", "options"}
GENERATOR_OPTIONS = {"labels", "disableNameSuffixHash"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
    "IngressClass",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
}
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
GENERATED = "__generated__"  # marks a generated object until its name is hashed


class KustomizeError(Exception):
    pass


def build(directory) -> list[dict]:
    """The objects `kustomize build directory` would print (in no particular order)."""
    objects = _build(Path(directory))
    renames = {}
    for obj in objects:
        options = obj.pop(GENERATED, None)
        if options is not None and not options.get("disableNameSuffixHash"):
            old = obj["metadata"]["name"]
            obj["metadata"]["name"] = f"{old}-{content_hash(obj)}"
            renames[(obj["kind"], old)] = obj["metadata"]["name"]
    for obj in objects:
        for ref_kind, holder in _references(obj):
            key = "secretName" if "secretName" in holder else "name"
            holder[key] = renames.get((ref_kind, holder[key]), holder[key])
    return objects


def _build(root: Path) -> list[dict]:
    kustomization = yaml.safe_load((root / "kustomization.yaml").read_text())
    unknown = set(kustomization) - FIELDS
    if unknown:
        raise KustomizeError(f"{root}: kustomization fields not supported here: {sorted(unknown)}")
    objects = []
    for entry in kustomization.get("resources", []):
        path = root / entry
        if path.is_dir():
            objects += _build(path)
        elif path.is_file():
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        else:
            raise KustomizeError(f"{root}: resource {entry} is neither a file nor a directory")
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for generator in kustomization.get(key, []):
            _generate(root, objects, kind, generator)
    for patch in kustomization.get("patches", []):
        _patch(root, objects, patch)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(objects, image)
    return objects


# generators


def read_env_file(path: Path) -> dict[str, str]:
    """kustomize's env file: KEY=VALUE lines, leading blanks ignored, '#' lines are comments."""
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", key):
            raise KustomizeError(f"{path}: {key!r} is not an environment variable name")
        pairs[key] = value
    return pairs


def _generate(root: Path, objects: list[dict], kind: str, generator: dict) -> None:
    unknown = set(generator) - GENERATOR_FIELDS
    unknown |= set(generator.get("options", {})) - GENERATOR_OPTIONS
    if unknown:
        raise KustomizeError(f"{root}: generator fields not supported here: {sorted(unknown)}")
    values = {}
    for env_file in generator.get("envs", []):
        values.update(read_env_file(root / env_file))
    for literal in generator.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep:
            raise KustomizeError(f"{root}: literal {literal!r} is not KEY=VALUE")
        values[key] = value
    options = dict(generator.get("options", {}))
    behavior = generator.get("behavior", "create")
    existing = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == generator["name"]]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"{root}: {kind} {generator['name']} already exists")
        obj = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
        objects.append(obj)
    elif behavior in ("merge", "replace"):
        if len(existing) != 1:
            raise KustomizeError(f"{root}: no {kind} {generator['name']} to {behavior}")
        [obj] = existing
        if GENERATED not in obj:
            raise KustomizeError(
                f"{root}: {kind} {generator['name']} was not generated here; kustomize would not hash it"
            )
        if behavior == "merge":
            values = {**_decoded(obj), **values}
            options = {
                **obj.get(GENERATED, {}),
                **options,
                "labels": {**obj.get(GENERATED, {}).get("labels", {}), **options.get("labels", {})},
            }
    else:
        raise KustomizeError(f"{root}: generator behavior {behavior!r}")
    if options.get("labels"):
        obj["metadata"]["labels"] = dict(options["labels"])
    else:
        obj["metadata"].pop("labels", None)
    if kind == "Secret":
        obj["type"] = "Opaque"
        obj["data"] = {k: _base64(v) for k, v in values.items()}
    else:
        obj["data"] = dict(values)
    obj[GENERATED] = options


def _decoded(obj: dict) -> dict[str, str]:
    if obj["kind"] == "Secret":
        return {k: base64.b64decode(v).decode() for k, v in obj.get("data", {}).items()}
    return dict(obj.get("data", {}))


def _base64(value: str) -> str:
    """kustomize's encoding: base64, broken into 70-character lines once it reaches 70."""
    encoded = base64.b64encode(value.encode()).decode()
    if len(encoded) < 70:
        return encoded
    return "".join(encoded[i : i + 70] + "\n" for i in range(0, len(encoded), 70))


def content_hash(obj: dict) -> str:
    """kustomize's name suffix for a generated ConfigMap or Secret (api/hasher).

    Its "name" is always empty: kustomize looks the name up as one field called "metadata/name".
    """
    if obj["kind"] == "Secret":
        fields = {"kind": "Secret", "type": obj.get("type", ""), "name": "", "data": obj.get("data", "")}
    else:
        fields = {"kind": "ConfigMap", "name": "", "data": obj.get("data", "")}
    # Go's json.Marshal: sorted keys, no spaces, and <, >, & escaped.
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        encoded = encoded.replace(char, escape)
    digest = sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"}))


# patches


def _patch(root: Path, objects: list[dict], entry: dict) -> None:
    unknown = set(entry) - {"path", "patch", "target"}
    if unknown:
        raise KustomizeError(f"{root}: patch fields not supported here: {sorted(unknown)}")
    text = (root / entry["path"]).read_text() if "path" in entry else entry["patch"]
    target = entry.get("target")
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    if len(docs) == 1 and isinstance(docs[0], list):  # JSON 6902
        if not target:
            raise KustomizeError(f"{root}: a JSON 6902 patch needs a target")
        matched = [o for o in objects if _matches(o, target)]
        if not matched:
            raise KustomizeError(f"{root}: patch target {target} matches nothing")
        operations = jsonpatch.JsonPatch(docs[0])
        for obj in matched:
            objects[objects.index(obj)] = operations.apply(obj)
        return
    for doc in docs:
        _reject_lists(doc, root)
        selector = target or {"kind": doc["kind"], "name": re.escape(doc["metadata"]["name"])}
        matched = [
            o for o in objects if _matches(o, selector) and (target or o["apiVersion"] == doc["apiVersion"])
        ]
        if not matched:
            raise KustomizeError(f"{root}: patch for {doc['kind']} {doc['metadata']['name']} matches nothing")
        for obj in matched:
            _merge(obj, doc)


def _reject_lists(value, root: Path) -> None:
    """Lists in a strategic-merge patch merge by keys that depend on the schema: not imitated here."""
    if isinstance(value, list):
        raise KustomizeError(f"{root}: lists in strategic-merge patches are not supported; use JSON 6902")
    if isinstance(value, dict):
        if any(str(k).startswith("$") for k in value):
            raise KustomizeError(f"{root}: patch directives are not supported")
        for item in value.values():
            _reject_lists(item, root)


def _merge(obj: dict, patch: dict) -> None:
    for key, value in patch.items():
        if value is None:
            obj.pop(key, None)
        elif isinstance(value, dict) and isinstance(obj.get(key), dict):
            _merge(obj[key], value)
        else:
            obj[key] = copy.deepcopy(value)


def _matches(obj: dict, target: dict) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported here: {sorted(unknown)}")
    group, _, version = obj["apiVersion"].rpartition("/")
    checks = {
        "group": group,
        "version": version,
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "namespace": obj["metadata"].get("namespace", ""),
    }
    return all(re.fullmatch(str(target[k]), checks[k]) for k in target)


# images and references


def pod_spec(obj: dict) -> dict | None:
    if obj["kind"] in POD_TEMPLATE_KINDS:
        return obj["spec"]["template"]["spec"]
    return None


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj) or {}
    return spec.get("initContainers", []) + spec.get("containers", [])


def split_image(image: str) -> tuple[str, str, str]:
    """name, tag, digest; a registry's port is part of the name."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _set_image(objects: list[dict], image: dict) -> None:
    unknown = set(image) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"image fields not supported here: {sorted(unknown)}")
    for obj in objects:
        for container in containers(obj):
            name, tag, digest = split_image(container["image"])
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{name}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{name}:{image['newTag']}"
            else:
                container["image"] = name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _references(obj: dict):
    """(kind, the dict holding the name) for every ConfigMap and Secret a pod template names."""
    spec = pod_spec(obj)
    if spec is None:
        return
    for container in containers(obj):
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]
            if "secretRef" in source:
                yield "Secret", source["secretRef"]
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]
        if "secret" in volume:
            yield "Secret", volume["secret"]
