"""``normstudy submit``: run a study's driver on a Ray cluster through Ray's job API.

The spec is validated here, then written (overrides and ``--smoke`` applied) into a
temporary folder that becomes the job's ``working_dir``; this checkout's ``studies`` and
``normlib`` packages travel as ``py_modules``. On the head node the job runs
``python -m studies.cli run study.yaml --address auto`` (the same as ``normstudy run``), so
the study keeps going when the submitting machine sleeps or disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studies.config.components import code_modules
from studies.config.load import dump_spec
from studies.config.spec import SpecError, StudySpec
from studies.store.layout import SPEC_FILE

if TYPE_CHECKING:  # Ray loads only when a job is submitted
    from ray.job_submission import JobSubmissionClient

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# Exit codes of `submit --wait` by the job's final status (2 stays "bad input").
EXIT_CODES = {"SUCCEEDED": 0, "FAILED": 1, "STOPPED": 3}
TERMINAL = set(EXIT_CODES)


ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")


def job_api_address(address: str | None) -> str | None:
    """``--address``; else None when RAY_API_SERVER_ADDRESS / RAY_ADDRESS name the cluster (Ray
    resolves them); else the local dashboard."""
    if address:
        return address
    return None if any(os.environ.get(name) for name in ADDRESS_ENV) else DEFAULT_ADDRESS


@contextlib.contextmanager
def hidden_env(names: tuple[str, ...]) -> Iterator[None]:
    """Ray's job client prefers RAY_ADDRESS to the address it is given: hide it meanwhile."""
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def check_cluster_storage(spec: StudySpec) -> None:
    """A job runs in a temporary folder on the head: a relative results path would vanish."""
    storage = spec.storage
    if storage.startswith("~") or Path(storage).is_absolute():
        return
    message = (f"{storage!r} is relative, but the job runs in a temporary folder on the head "
               "node; pass --storage with an absolute path on the cluster's shared filesystem, "
               "e.g. --storage /shared/normstudy-results")  # fmt: skip
    raise SpecError([("storage", message)])


def package_dirs() -> list[str]:
    """The folders of this checkout's ``studies`` and ``normlib`` packages."""
    import normlib
    import studies

    return [str(Path(str(module.__file__)).parent) for module in (studies, normlib)]


def runtime_env(working_dir: str | Path, code: str | None = None) -> dict[str, Any]:
    """The job's runtime_env: the spec folder, normstudy's packages and the user's ``code``
    (its packages and modules; the driver and every worker of the job import them)."""
    user = [str(path) for path in code_modules(code)] if code else []
    return {
        "working_dir": str(working_dir),
        "py_modules": package_dirs() + user,
        "excludes": ["__pycache__", "*.pyc"],
    }  # no env_vars: the driver's ray.init sets its own, and Ray refuses overlapping keys


def entrypoint(overwrite: bool = False) -> str:
    command = ["python", "-m", "studies.cli", "run", SPEC_FILE, "--address", "auto"]
    if overwrite:
        command.append("--overwrite")
    return shlex.join(command)


def connect(address: str | None) -> JobSubmissionClient:
    """A JobSubmissionClient, or SpecError naming ``--address`` if the API is unreachable."""
    from ray.job_submission import JobSubmissionClient

    try:
        with hidden_env(ADDRESS_ENV if address else ()):
            return JobSubmissionClient(address)
    except Exception as err:  # ConnectionError, auth errors, bad URLs: nothing was submitted
        reason = " ".join(str(err).split())[:300]
        named = [f"{name}={os.environ[name]}" for name in ADDRESS_ENV if os.environ.get(name)]
        where = address or " / ".join(named)
        raise SpecError([("--address", f"cannot reach the Ray job API at {where} ({reason}); "
                          "start the cluster or open the SSH tunnel to the dashboard port, "
                          "see cluster/README.md")]) from None  # fmt: skip


def submit_study(spec: StudySpec, address: str | None = None, overwrite: bool = False,
                 wait: bool = False) -> int:  # fmt: skip
    """Submit the validated spec as a Ray job; with ``wait``, follow it and return its status."""
    check_cluster_storage(spec)
    client = connect(job_api_address(address))
    address = getattr(client, "_address", address)  # the URL Ray resolved
    submission_id = f"normstudy-{spec.name}-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="normstudy-job-") as folder:
        # keeps its URI; the code travels in the job's runtime_env, not as a local path
        job_spec = spec.model_copy(update={"code": None})
        (Path(folder) / SPEC_FILE).write_text(dump_spec(job_spec, masked=False))
        job_id = client.submit_job(
            entrypoint=entrypoint(overwrite),
            runtime_env=runtime_env(folder, spec.code),
            submission_id=submission_id,
            metadata={"normstudy.study": spec.name, "normstudy.storage": spec.storage},
        )  # the packages are uploaded before submit_job returns
    flag = f"--address {shlex.quote(str(address))}"
    print(f"[normstudy] submitted study {spec.name!r} as Ray job {job_id} to {address}")
    print(f"[normstudy] results on the cluster: {spec.storage}/{spec.name}")
    print(f"[normstudy] follow:  ray job logs {job_id} --follow {flag}")
    print(f"[normstudy] status:  ray job status {job_id} {flag}")
    print(f"[normstudy] stop:    ray job stop {job_id} {flag}")
    if not wait:
        return 0
    return follow(client, job_id)


def follow(client: JobSubmissionClient, job_id: str, poll_s: float = 2.0) -> int:
    """Print the job's log until it ends; the exit code follows its final status."""

    async def tail() -> None:
        async for lines in client.tail_job_logs(job_id):
            sys.stdout.write(lines)
            sys.stdout.flush()

    try:
        try:
            asyncio.run(tail())
        except Exception as err:  # the log stream broke; the job's status still tells
            print(f"[normstudy] log stream ended ({err}); waiting for the job to finish")
        status = str(client.get_job_status(job_id))
        while status.split(".")[-1] not in TERMINAL:
            time.sleep(poll_s)
            status = str(client.get_job_status(job_id))
    except KeyboardInterrupt:
        print(f"\n[normstudy] stopped following; job {job_id} keeps running on the cluster")
        return 130
    status = status.split(".")[-1]
    print(f"[normstudy] job {job_id} {status}")
    return EXIT_CODES[status]
