"""The official Kubernetes Python client against `lanes up`, through its kubeconfig:
lists, creates, patches and watches, and prints what it saw as one JSON line.

Usage: python_client.py KUBECONFIG
"""
import json
import sys
import threading
import time

from kubernetes import client, config, watch


def main():
    config.load_kube_config(config_file=sys.argv[1])
    core = client.CoreV1Api()
    apps = client.AppsV1Api()
    custom = client.CustomObjectsApi()
    out = {}

    out["pods"] = sorted(p.metadata.name for p in core.list_namespaced_pod("default").items)
    out["deployments"] = sorted(d.metadata.name for d in apps.list_namespaced_deployment("default").items)
    out["namespaces"] = sorted(n.metadata.name for n in core.list_namespace().items)
    rollouts = custom.list_namespaced_custom_object("rollouts.kruise.io", "v1beta1", "default", "rollouts")
    out["rollouts"] = sorted(r["metadata"]["name"] for r in rollouts["items"])

    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="py-web", labels={"made-by": "python"}),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)], selector={"app": "py-web"}),
    )
    created = core.create_namespaced_service("default", svc)
    out["created"] = created.metadata.name
    out["created_uid"] = bool(created.metadata.uid)

    seen = []
    w = watch.Watch()

    def follow():
        for ev in w.stream(core.list_namespaced_service, "default",
                           resource_version=created.metadata.resource_version,
                           timeout_seconds=30):
            obj = ev["object"]
            seen.append([ev["type"], obj.metadata.name, (obj.metadata.labels or {}).get("patched")])
            if ev["type"] == "MODIFIED":
                w.stop()

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(1)
    patched = core.patch_namespaced_service("py-web", "default", {"metadata": {"labels": {"patched": "yes"}}})
    out["patched"] = patched.metadata.labels.get("patched")
    t.join(40)
    out["watched"] = seen

    try:
        core.read_namespaced_service("nosuch", "default")
        out["missing"] = None
    except client.exceptions.ApiException as e:
        out["missing"] = [e.status, json.loads(e.body)["reason"]]

    core.delete_namespaced_service("py-web", "default")
    out["after_delete"] = [s.metadata.name for s in core.list_namespaced_service("default").items if s.metadata.name == "py-web"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
