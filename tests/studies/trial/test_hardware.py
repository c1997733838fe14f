"""Whether a trial fits this machine, checked before a local run starts Ray: the refusal is
one line naming the field, what the machine has, and the ways out."""

from __future__ import annotations

import pytest

from studies.config.spec import CannotStart, SpecError
from studies.trial import hardware
from studies.trial.hardware import check_machine, trial_needs
from studies.trial.validation import load_spec

GIB = 2**30
LAPTOP = {"CPU": 2.0, "GPU": 0.0, "memory": 16.0 * GIB}


def spec_with(*overrides: str):
    return load_spec("quickstart", list(overrides))


@pytest.fixture
def laptop(monkeypatch):
    monkeypatch.setattr(hardware, "machine_resources", lambda: dict(LAPTOP))


def refused(spec, check) -> str:
    with pytest.raises(CannotStart) as err:
        check(spec)
    message = str(err.value)
    assert "\n" not in message and message.startswith("cannot start the study: ")
    return message.removeprefix("cannot start the study: ")


def test_a_local_run_names_the_field_what_the_machine_has_and_the_ways_out(laptop):
    message = refused(spec_with("resources.gpu=1"), check_machine)
    assert message == ("resources.gpu: a trial asks for 1 GPU, this machine has 0 (GPUs as "
                       "torch sees them); train on CPU with --set resources.gpu=0, or run on a "
                       "Ray cluster that has GPUs with --address")  # fmt: skip
    message = refused(spec_with("resources.cpu=4"), check_machine)
    assert message.startswith("resources.cpu: a trial asks for 4 CPUs, this machine has 2;")
    assert "--set resources.cpu=2" in message
    message = refused(spec_with("resources.memory_gb=64"), check_machine)
    assert message.startswith("resources.memory_gb: a trial asks for 64 GiB of memory, this "
                              "machine has 16 GiB;")  # fmt: skip
    message = refused(spec_with("resources.custom={a100: 1}"), check_machine)
    assert message.startswith("resources.custom.a100: a trial asks for 1 'a100' (a custom "
                              "resource), this machine has 0;")  # fmt: skip
    check_machine(spec_with("resources.cpu=2", "resources.memory_gb=8"))  # fits: no error


def test_wait_s_and_custom_resources_are_validated():
    with pytest.raises(SpecError) as err:
        spec_with("resources.wait_s=0")
    assert err.value.problems[0][0] == "resources.wait_s"
    with pytest.raises(SpecError) as err:
        spec_with("resources.custom={GPU: 1}")
    assert "not a custom resource" in str(err.value)
    spec = spec_with("resources.custom={scratch: 2}", "resources.memory_gb=2")
    assert spec.resources.wait_s == 600
    assert trial_needs(spec) == {"CPU": 1.0, "memory": 2.0 * GIB, "scratch": 2.0}



def test_a_local_load_refuses_before_building_any_model(laptop, monkeypatch):
    from studies.trial import validation

    def no_build(*args, **kwargs):
        raise AssertionError("built the models of a study this machine cannot run")

    monkeypatch.setattr(validation, "check_spec", no_build)
    with pytest.raises(CannotStart, match="resources.gpu: a trial asks for 1 GPU"):
        load_spec("quickstart", ["resources.gpu=1"], machine=True)


def test_this_machine_as_torch_and_the_os_see_it():
    import os

    import torch

    have = hardware.machine_resources()
    assert have["GPU"] == torch.cuda.device_count()
    assert 1 <= have["CPU"] <= (os.cpu_count() or 1)
    assert have["memory"] == hardware.machine_memory() > GIB
