"""Metamorphic grading: rewrites that keep what a network computes, composed at random by
Hypothesis, never change a grade; mode bugs composed with them cost exactly their parts,
each for a reason grader/CHECKS.md writes down. A failing draw shrinks to the smallest
composition that fails. `make test` draws the same few compositions every run
(``CNN_HYPOTHESIS=explore`` draws 200 new ones)."""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from cnn_grader.hidden_checks import checks
from grading_corpus import NO_OP_MOVES, AlexNetRef, Net, edited, replace_all, with_forward
from test_fair_grading import CHECKS_MD, INTERNALS, PARTS, hidden

settings.register_profile("ci", max_examples=8, derandomize=True, deadline=None,
                          database=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("CNN_HYPOTHESIS", "ci"))


def on_input(change):
    return lambda base: with_forward(base, lambda self, x: base.forward(self, change(self, x)),
                                     base.__name__)


def on_output(change):
    return lambda base: with_forward(base, lambda self, x: change(self, base.forward(self, x)),
                                     base.__name__)


def in_constructor(change):
    return lambda base: edited(base, change, base.__name__)


def decorated(decorator):
    """forward() under ``decorator`` (a gradient mode used as a decorator)."""
    return lambda base: with_forward(
        base, decorator(lambda self, x: base.forward(self, x)), base.__name__)


def inside(context):
    """forward()'s body in a ``with context():`` block."""
    def forward(base):
        def run(self, x):
            with context():
                return base.forward(self, x)
        return run
    return lambda base: with_forward(base, forward(base), base.__name__)


class AlwaysOnDropout(nn.Dropout):
    """An nn.Dropout whose forward forgets the mode (F.dropout's default training=True)."""

    def forward(self, x):
        return F.dropout(x, self.p)


def wrap_last(attr: str):
    def change(self):
        seq = getattr(self, attr)
        seq[len(seq) - 1] = nn.Sequential(seq[len(seq) - 1])
    return change


REWRITES = {
    **{f"input: {name}": on_input(move) for name, move in NO_OP_MOVES.items()},
    "input: x * 1": on_input(lambda self, x: x * 1),
    "input: x + 0": on_input(lambda self, x: x + 0),
    "input: x / 1.0": on_input(lambda self, x: x / 1.0),
    "input: x.view(x.shape)": on_input(lambda self, x: x.view(x.shape)),
    "input: x.reshape(-1, *x.shape[1:])": on_input(lambda self, x: x.reshape(-1, *x.shape[1:])),
    "input: clone()": on_input(lambda self, x: x.clone()),
    "input: nn.Identity()": on_input(lambda self, x: nn.Identity()(x)),
    "output: 1 * logits": on_output(lambda self, y: 1 * y),
    "output: logits - 0": on_output(lambda self, y: y - 0),
    "features: nn.Identity() first": in_constructor(
        lambda self: self.features.insert(0, nn.Identity())),
    "classifier: last layer in a Sequential of one": in_constructor(wrap_last("classifier")),
    "features: last layer in a Sequential of one": in_constructor(wrap_last("features")),
    "ReLU: inplace flipped": in_constructor(
        replace_all(nn.ReLU, lambda m: nn.ReLU(inplace=not m.inplace))),
    "forward: @torch.enable_grad()": decorated(torch.enable_grad()),
    "forward: with torch.set_grad_enabled(True)": inside(lambda: torch.set_grad_enabled(True)),
}

# Mode bugs, applied after the rewrites in this order: each costs the parts it names, for
# the reason grader/CHECKS.md gives in the words named here.
MODE_BUGS = {
    "dropout always on": (in_constructor(replace_all(nn.Dropout, lambda m: AlwaysOnDropout(m.p))),
                          {"logits": "**`drops-in-eval`**"}),
    "forward: @torch.no_grad()": (decorated(torch.no_grad()),
                                  {"trainable": "**`trainable-step`**"}),
    "forward: with torch.no_grad()": (inside(torch.no_grad),
                                      {"trainable": "**`trainable-step`**"}),
    "returns (logits, x)": (lambda base: with_forward(
        base, lambda self, x: (base.forward(self, x), x), base.__name__),
        {"logits": "**What forward() returns.**"}),
}


@pytest.fixture(autouse=True, scope="module")
def no_training():
    """The accuracy part's gate runs; its training returns a falling loss at once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checks, "trained", lambda *args, **kwargs: (2.30, 2.20, 0.1, 0.0))
        yield


@pytest.mark.parametrize("name", sorted(REWRITES))
def test_each_rewrite_keeps_every_grade(name):
    results = hidden(Net(name, "alexnet", REWRITES[name](AlexNetRef)))
    assert all(passed for passed, _message in results.values()), {
        part: message for part, (passed, message) in results.items() if not passed}


@given(st.lists(st.sampled_from(sorted(REWRITES)), min_size=2, max_size=4))
def test_composed_rewrites_keep_every_grade(names):
    cls = AlexNetRef
    for name in names:
        cls = REWRITES[name](cls)
    results = hidden(Net(" + ".join(names), "alexnet", cls))
    failed = {part: message for part, (passed, message) in results.items() if not passed}
    assert not failed and set(results) == set(PARTS), (names, failed)


@pytest.mark.parametrize("name", sorted(MODE_BUGS))
def test_each_mode_bug_costs_its_parts(name):
    rewrite, expected = MODE_BUGS[name]
    results = hidden(Net(name, "alexnet", rewrite(AlexNetRef)))
    assert {part for part, (passed, _m) in results.items() if not passed} == set(expected), results
    assert all(reason in CHECKS_MD for reason in expected.values())


@given(st.lists(st.sampled_from(sorted(REWRITES)), max_size=3),
       st.sets(st.sampled_from(sorted(MODE_BUGS)), min_size=1, max_size=2))
def test_mode_bugs_among_rewrites_cost_exactly_their_parts(names, bugs):
    cls = AlexNetRef
    for name in names:
        cls = REWRITES[name](cls)
    for bug in (b for b in MODE_BUGS if b in bugs):
        cls = MODE_BUGS[bug][0](cls)
    expected = {part for bug in bugs for part in MODE_BUGS[bug][1]}
    results = hidden(Net(" + ".join([*names, *sorted(bugs)]), "alexnet", cls))
    failed = {part: message for part, (passed, message) in results.items() if not passed}
    assert set(failed) == expected, (names, bugs, failed)
    assert not any(word in message for message in failed.values() for word in INTERNALS), failed
