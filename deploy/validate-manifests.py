"""Validates rendered Kubernetes manifests strictly and offline.

Kubernetes kinds are checked against the JSON schemas of a current Kubernetes release that the
kubernetes-validate package ships, in strict mode (an unknown field is an error). cert-manager
kinds are checked against the models that cloudcoil-models-cert-manager generates from
cert-manager's CRD schemas, with unknown fields forbidden too. CloudNativePG kinds are checked
against the TypeScript models @kubernetes-models/cloudnative-pg generates from CloudNativePG's Go
API types, by the TypeScript compiler: the object becomes a typed literal, whose excess-property
checks reject an unknown field at any depth (the models and compiler live in the directory
$HEARTH_CRD_MODELS, installed by check-manifests from crd-models/). A kind none knows is an
error.

    python validate-manifests.py [--self-test] FILE...

--self-test also adds an unknown field to the spec (or top level) of every object and checks
that validation then fails: the proof that a bad field cannot pass unnoticed.
Exits 1 when anything is invalid, printing the object and the path of each problem.
"""

import copy
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

import kubernetes_validate
import pydantic
import yaml
from cloudcoil import apimachinery
from cloudcoil.models.cert_manager import v1 as cert_manager_v1
from cloudcoil.models.cert_manager.acme import v1 as acme_v1

KUBERNETES_VERSION = kubernetes_validate.latest_version()


def strict_cert_manager_models():
    """cert-manager's kinds by (apiVersion, kind), their models rejecting unknown fields."""
    modules = [cert_manager_v1, acme_v1, apimachinery]
    models = [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if issubclass(cls, pydantic.BaseModel) and cls.__module__ == module.__name__
    ]
    for model in models:
        model.model_config["extra"] = "forbid"
    # A model's validator embeds those of its fields' models as they were when it was built,
    # so rebuild until the strictness has reached the deepest nesting.
    for _ in range(16):
        for model in models:
            model.model_rebuild(force=True)
    kinds = {}
    for module, group in [(cert_manager_v1, "cert-manager.io/v1"), (acme_v1, "acme.cert-manager.io/v1")]:
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and "kind" in cls.model_fields and "api_version" in cls.model_fields:
                kinds[(group, name)] = cls
    return kinds


CERT_MANAGER_KINDS = strict_cert_manager_models()

# Kinds checked by the TypeScript compiler: (apiVersion, kind) -> (module, interface).
TYPESCRIPT_KINDS = {
    ("postgresql.cnpg.io/v1", "Cluster"): ("@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1", "ICluster"),
}


def typescript_problems(document, module, interface):
    """What the TypeScript compiler finds wrong with `document` typed as `interface`."""
    models = os.environ.get("HEARTH_CRD_MODELS")
    if not models:
        return ["HEARTH_CRD_MODELS is not set: run deploy/check-manifests"]
    with tempfile.TemporaryDirectory(dir=models) as work:
        source = os.path.join(work, "manifest.ts")
        with open(source, "w") as file:
            file.write(f'import type {{ {interface} }} from "{module}";\n')
            file.write(f"export const manifest: {interface} = {json.dumps(document, indent=1)};\n")
        compiler = os.path.join(models, "node_modules", "typescript", "bin", "tsc")
        options = ["--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext", "--target", "es2022"]
        result = subprocess.run(["node", compiler, *options, source], capture_output=True, text=True)
    if result.returncode == 0:
        return []
    found = [re.sub(r"^.*manifest\.ts", "manifest.ts", line) for line in result.stdout.splitlines() if "error TS" in line]
    return found or [result.stdout + result.stderr]


def problems(document):
    """What is wrong with one object: a list of messages, empty when it is valid."""
    key = (document.get("apiVersion"), document.get("kind"))
    if key in TYPESCRIPT_KINDS:
        return typescript_problems(document, *TYPESCRIPT_KINDS[key])
    model = CERT_MANAGER_KINDS.get(key)
    if model is not None:
        try:
            model.model_validate(document)
            return []
        except pydantic.ValidationError as error:
            return [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()]
    try:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.SchemaNotFoundError as error:
        return [error.message]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(str(p) for p in error.path) or "(top level)"
        return [f"{path}: {error.message}"]


def describe(document):
    metadata = document.get("metadata") or {}
    return f"{document.get('kind')}/{metadata.get('name')} ({document.get('apiVersion')})"


def main(arguments):
    self_test = "--self-test" in arguments
    files = [a for a in arguments if a != "--self-test"]
    failed = False
    checked = 0
    for path in files:
        with open(path) as file:
            documents = [d for d in yaml.safe_load_all(file) if d]
        for document in documents:
            checked += 1
            for problem in problems(document):
                failed = True
                print(f"{path}: {describe(document)}: {problem}")
            if self_test:
                broken = copy.deepcopy(document)
                target = broken["spec"] if isinstance(broken.get("spec"), dict) else broken
                target["notAField"] = True
                if not problems(broken):
                    failed = True
                    print(f"{path}: {describe(document)}: an unknown field passed validation")
    print(
        f"validated {checked} object(s) against Kubernetes {KUBERNETES_VERSION}, cert-manager's and CloudNativePG's CRDs"
        + (", and each with an unknown field rejected" if self_test else "")
        + (": INVALID" if failed else ": valid")
    )
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
