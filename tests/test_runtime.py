"""Run profiles and device selection."""
from __future__ import annotations

import pytest
import torch

from cnn_course import runtime
from cnn_course.runtime import PROFILES, describe_run, get_profile, pick_device


def test_named_profiles():
    assert get_profile("full").image_size("alexnet") == 227
    assert get_profile("full").image_size("vgg16") == 224
    assert get_profile("ci").subset and not get_profile("cpu").subset
    assert get_profile(" CPU ").name == "cpu"


def test_environment_variable_overrides(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "full")
    assert get_profile().name == "full"


def test_unknown_profile_lists_the_valid_ones(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "gpu")
    with pytest.raises(ValueError, match=r"unknown run profile 'gpu'.*valid profiles: full, cpu, ci"):
        get_profile()


def test_unknown_model_size_is_explained():
    with pytest.raises(ValueError, match="known models: alexnet, naive, vgg16"):
        PROFILES["ci"].image_size("resnet")


@pytest.mark.parametrize("cuda, mps, expected", [
    (True, True, "cuda"), (False, True, "mps"), (False, False, "cpu"),
])
def test_device_order(monkeypatch, cuda, mps, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert pick_device().type == expected


@pytest.mark.parametrize("cuda, expected", [(True, "full"), (False, "cpu")])
def test_automatic_profile_follows_the_device(monkeypatch, cuda, expected):
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert get_profile().name == expected


def test_describe_run_names_profile_and_device():
    line = describe_run(PROFILES["ci"], torch.device("cpu"))
    assert line.startswith("profile: ci (") and "device: cpu" in line and torch.__version__ in line


@pytest.mark.parametrize("name", PROFILES)
def test_profile_descriptions_speak_to_students(name):
    """Every notebook prints the description first: it must not point at the course's test
    suite or its repository, which students do not have."""
    text = PROFILES[name].description.lower()
    assert not any(word in text for word in ("test", "commit", "repositor", "ci")), text
