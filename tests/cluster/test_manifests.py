"""The cluster configs parse and carry what Ray's launcher, KubeRay and MLflow need."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.cluster

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_aws_launcher_config_matches_rays_schema():
    import jsonschema
    import ray.autoscaler

    config = yaml.safe_load((CLUSTER / "ray-aws-gpu.yaml").read_text())
    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    # the launcher's own checks beyond the schema (ray.autoscaler._private.util.validate_config)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    workers = [spec for name, spec in types.items() if name != config["head_node_type"]]
    assert sum(spec.get("min_workers", 0) for spec in workers) <= config["max_workers"]
    assert config["provider"]["type"] == "aws"
    head = types[config["head_node_type"]]
    assert head["resources"]["CPU"] == 0 and "GPU" not in head["resources"]
    (gpu,) = workers
    assert (gpu["min_workers"], gpu["max_workers"], gpu["resources"]["GPU"]) == (0, 8, 1)
    setup = " ".join(config["setup_commands"])
    assert "pip install" in setup and "normstudy" in setup and "/shared" in setup
    starts = " ".join(config["head_start_ray_commands"] + config["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in starts and "normstudy.env" in starts
    assert "--dashboard-host=127.0.0.1" in starts  # reached through an SSH tunnel only
    assert "./cluster/cluster.env" in config["file_mounts"].values()


def test_aws_config_explains_every_field_a_user_edits():
    lines = (CLUSTER / "ray-aws-gpu.yaml").read_text().splitlines()
    edits = [i for i, line in enumerate(lines) if "EDIT" in line]
    assert len(edits) >= 8
    for key in ("cluster_name:", "region:", "InstanceType:", "ImageId:", "min_workers:",
                "idle_timeout_minutes:", "efs.", "max_workers:"):  # fmt: skip
        at = next(i for i, line in enumerate(lines) if key in line)
        nearby = lines[max(0, at - 4) : at + 1]
        assert any("#" in line for line in nearby), f"{key} has no comment"


def test_kuberay_cluster_and_job_carry_the_required_keys():
    (cluster,) = load_all(CLUSTER / "kuberay" / "raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True and spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())  # CRD: strings
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"]
    (group,) = spec["workerGroupSpecs"]
    assert {"groupName", "rayStartParams", "template"} <= set(group)
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 8)
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for template in (head["template"], group["template"]):
        claims = [v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]]
        assert claims == ["normstudy-shared"]
    (pvc,) = load_all(CLUSTER / "kuberay" / "shared-pvc.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and pvc["metadata"]["name"] == "normstudy-shared"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    (job,) = load_all(CLUSTER / "kuberay" / "rayjob.yaml")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    entry = job["spec"]["entrypoint"]
    assert re.match(r"normstudy run \S+ --address auto ", entry)
    assert "--storage /shared/" in entry


def test_mlflow_stack_takes_its_secrets_from_the_env_file_only():
    folder = CLUSTER / "mlflow"
    compose = yaml.safe_load((folder / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "minio", "mlflow"} <= set(services)
    mlflow = services["mlflow"]
    command = " ".join(mlflow["command"])
    assert "--app-name basic-auth" in command and "postgresql://" in command
    assert "s3://" in command and "--serve-artifacts" in command
    assert mlflow["ports"] == ["127.0.0.1:5000:5000"]
    example = dict(
        line.split("=", 1)
        for line in (folder / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    for name in ("POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                 "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY"):  # fmt: skip
        assert example[name] == "", f"{name} must be empty in the example file"
    referenced = set(re.findall(r"\$\$\{(\w+)", (folder / "docker-compose.yaml").read_text()))
    assert referenced - {"MLFLOW_ALLOWED_HOSTS"} <= set(example)
    assert all(s.get("env_file") == ".env" for n, s in services.items() if n != "create-bucket")
    ignored = (CLUSTER / ".gitignore").read_text().splitlines()
    assert "mlflow/.env" in ignored and "cluster.env" in ignored
    docs = load_all(folder / "k8s" / "mlflow.yaml")
    kinds = sorted(doc["kind"] for doc in docs)
    assert kinds.count("Deployment") == 3 and kinds.count("Service") == 3
    assert "Secret" not in kinds  # created from the env file with kubectl, never committed
    secret_refs = json.dumps(docs).count('"secretRef": {"name": "mlflow-credentials"}')
    assert secret_refs >= 3


def test_no_secret_values_are_committed():
    ignored = {CLUSTER / "mlflow" / ".env", CLUSTER / "cluster.env"}  # git-ignored, local only
    files = [p for p in CLUSTER.rglob("*") if p.is_file() and ".state" not in p.parts]
    assignment = re.compile(r"(?im)^[ \t-]*[\w.-]*(password|secret)[\w.-]*[ \t]*[:=][ \t]*(\S*)")
    for path in set(files) - ignored:
        for match in assignment.finditer(path.read_text()):
            value = match.group(2)
            assert value == "" or value.startswith(("{", "$")), f"{path}: {match.group(0)}"


def test_local_cluster_script_is_valid_bash():
    script = CLUSTER / "local-cluster.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    usage = subprocess.run([str(script), "bogus"], capture_output=True, text=True)
    assert usage.returncode == 2 and "start|stop|status" in usage.stderr
