"""The ENAS LSTM controller: exact policy gradient by enumeration, learning a synthetic reward, valid samples."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from lightning_nas.arch import Arch, Choice
from lightning_nas.controllers import LSTMController, UniformPolicy
from lightning_nas.functional import reinforce_loss, update_baseline
from lightning_nas.ops import ENAS_MICRO_OPS
from lightning_nas.sampling import step_generator
from lightning_nas.spaces import DartsCellSpace, EnasMacroSpace, NodeChoice

# A tiny graph with every kind of decision: an op, two input selections and a group of two skip connections.
CHOICES = [
    Choice("n2/op", ("conv", "pool")),
    Choice("n2/in", (0, 1)),
    Choice("n3/in", (0, 1, 2)),
    Choice("n3/skip0", (0, 1)),
    Choice("n3/skip2", (0, 1)),
]
GRAPH = {
    "n2/op": NodeChoice("n2", "op"),
    "n2/in": NodeChoice("n2", "select", ("n0", "n1")),
    "n3/in": NodeChoice("n3", "select", ("n0", "n1", "n2")),
    "n3/skip0": NodeChoice("n3", "connect", ("n0",)),
    "n3/skip2": NodeChoice("n3", "connect", ("n2",)),
}


def _all_archs(choices: list[Choice]) -> list[Arch]:
    names = [c.name for c in choices]
    return [dict(zip(names, values)) for values in itertools.product(*(c.candidates for c in choices))]


def _tiny_controller(**kwargs: object) -> LSTMController:
    torch.manual_seed(0)
    return LSTMController(CHOICES, GRAPH, hidden_size=8, **kwargs).double()  # type: ignore[arg-type]


@pytest.mark.parametrize(("temperature", "tanh_constant"), [(None, None), (5.0, 2.5)])
def test_policy_gradient_equals_the_exact_gradient_of_the_expected_reward(
    temperature: float | None, tanh_constant: float | None
) -> None:
    """sum_a p(a) grad[-reinforce_loss] = sum_a p(a) (R(a) - b) grad log p(a) = grad E[R], enumerating all 48 archs."""
    controller = _tiny_controller(temperature=temperature, tanh_constant=tanh_constant)
    params = list(controller.parameters())
    archs = _all_archs(CHOICES)
    rewards = torch.rand(len(archs), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    baseline = 0.3
    log_probs = torch.stack([controller.evaluate(a).log_prob for a in archs])
    assert math.isclose(log_probs.exp().sum().item(), 1.0, abs_tol=1e-12)  # a distribution over the 48 archs

    exact = torch.autograd.grad((log_probs.exp() * rewards).sum(), params, retain_graph=True)
    estimate = [torch.zeros_like(p) for p in params]
    for log_prob, reward in zip(log_probs, rewards):
        grads = torch.autograd.grad(-reinforce_loss(log_prob, reward, baseline), params, retain_graph=True)
        for total, grad in zip(estimate, grads):
            total += log_prob.exp().detach() * grad
    for e, g in zip(exact, estimate):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-4)
    assert max(e.abs().max().item() for e in exact) > 1e-3  # the check is not vacuous


def test_entropy_follows_the_chain_rule_and_samples_follow_log_prob() -> None:
    controller = _tiny_controller()
    archs = _all_archs(CHOICES)
    scored = [controller.evaluate(a) for a in archs]
    p = torch.stack([s.log_prob for s in scored]).exp().detach()
    joint_entropy = -(p * p.log()).sum()
    expected_path_entropy = sum(pi * s.entropy for pi, s in zip(p, scored))
    torch.testing.assert_close(expected_path_entropy, joint_entropy, rtol=0, atol=1e-10)

    counts = torch.zeros(len(archs), dtype=torch.float64)
    keys = [tuple(a.values()) for a in archs]
    draws = 1500
    with torch.no_grad():
        for k in range(draws):
            sample = controller.sample(step_generator(0, k))
            if k < 20:
                torch.testing.assert_close(sample.log_prob, controller.evaluate(sample.arch).log_prob)
            counts[keys.index(tuple(sample.arch.values()))] += 1
    # Seeded draws: within 4 standard deviations of a multinomial count everywhere.
    assert ((counts / draws - p).abs() <= 4 * (p * (1 - p) / draws).sqrt() + 1e-3).all()


def test_skip_penalty_is_the_kl_to_the_prior() -> None:
    choices = [Choice("n1/op", ("a", "b")), Choice("n1/skip0", (0, 1))]
    graph = {"n1/op": NodeChoice("n1", "op"), "n1/skip0": NodeChoice("n1", "connect", ("n0",))}
    torch.manual_seed(0)
    controller = LSTMController(choices, graph, hidden_size=8, skip_target=0.4).double()
    on = controller.evaluate({"n1/op": "a", "n1/skip0": 1})
    off = controller.evaluate({"n1/op": "a", "n1/skip0": 0})
    p = (on.log_prob.exp() / (on.log_prob.exp() + off.log_prob.exp())).item()  # P(skip | op a)
    kl = p * math.log(p / 0.4) + (1 - p) * math.log((1 - p) / 0.6)
    assert on.skip_penalty.item() == pytest.approx(kl, abs=1e-12)
    assert off.skip_penalty.item() == pytest.approx(kl, abs=1e-12)  # a property of p, not of the draw


@pytest.mark.parametrize("target_seed", [5, 7, 123])
def test_learns_a_synthetic_reward_that_the_random_policy_does_not(target_seed: int) -> None:
    """Reward: the fraction of choices equal to a hidden target; within 80 updates of 8 samples the target's
    probability rises well above uniform (1/48) for the controller and stays uniform for the random policy."""
    target = UniformPolicy(CHOICES).sample(step_generator(target_seed, 0)).arch
    uniform_log_prob = -math.log(48)

    def reward(arch: Arch) -> float:
        return sum(arch[name] == value for name, value in target.items()) / len(target)

    final_reward, target_log_prob = {}, {}
    torch.manual_seed(0)
    policies = {
        "lstm": LSTMController(CHOICES, GRAPH, temperature=None, tanh_constant=None),
        "random": UniformPolicy(CHOICES),
    }
    for name, policy in policies.items():
        params = list(policy.parameters())
        optimizer = torch.optim.Adam(params, lr=0.01, betas=(0.0, 0.999), eps=1e-3) if params else None
        baseline = torch.zeros(())
        recent = []
        for step in range(80):
            samples = [policy.sample(step_generator(0, step, k)) for k in range(8)]
            rewards = torch.tensor([reward(s.arch) for s in samples])
            if optimizer is not None:
                loss = reinforce_loss(torch.stack([s.log_prob for s in samples]), rewards, baseline)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            baseline = update_baseline(baseline, rewards, decay=0.9)
            recent.append(rewards.mean().item())
        final_reward[name] = sum(recent[-10:]) / 10
        with torch.no_grad():
            target_log_prob[name] = policy.evaluate(target).log_prob.item()
    assert target_log_prob["lstm"] > uniform_log_prob + math.log(5), target_log_prob
    assert target_log_prob["random"] == pytest.approx(uniform_log_prob)
    # A uniform draw matches (1/2 + 1/2 + 1/3 + 1/2 + 1/2) / 5 = 47% of the target's choices.
    assert final_reward["lstm"] > 0.75 > 0.6 > final_reward["random"], final_reward


@pytest.mark.parametrize(
    "space",
    [
        DartsCellSpace(in_channels=1, num_classes=3, channels=4, layers=3, steps=3, ops=ENAS_MICRO_OPS),
        EnasMacroSpace(in_channels=1, num_classes=3, channels=4, layers=4),
    ],
    ids=["darts_cell", "enas_macro"],
)
def test_sampled_and_greedy_archs_are_valid_children(space: DartsCellSpace | EnasMacroSpace) -> None:
    controller = LSTMController.for_space(space)
    with torch.no_grad():
        archs = [controller.sample(step_generator(0, k)).arch for k in range(20)] + [controller.greedy()]
    for arch in archs:
        assert space.validate_arch(arch) == arch
        space.activate(arch)
        assert space(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert len({tuple(a.values()) for a in archs}) > 10  # sampling explores


def test_same_generator_same_arch() -> None:
    controller = _tiny_controller()
    first = controller.sample(step_generator(7, 3, 1))
    again = controller.sample(step_generator(7, 3, 1))
    assert first.arch == again.arch
    torch.testing.assert_close(first.log_prob, again.log_prob)


def test_bad_inputs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="space has no choices"):
        LSTMController([])
    with pytest.raises(ValueError, match=r"unknown choices \['n9/in'\]"):
        LSTMController(CHOICES, {**GRAPH, "n9/in": NodeChoice("n9", "select", ("n0",))})
    with pytest.raises(ValueError, match=r"'n3/in' has 3 candidates but its NodeChoice names 2 sources"):
        LSTMController(CHOICES, {**GRAPH, "n3/in": NodeChoice("n3", "select", ("n0", "n1"))})
    with pytest.raises(ValueError, match=r"connect choice 'n2/op' must have candidates \(0, 1\)"):
        LSTMController(CHOICES, {**GRAPH, "n2/op": NodeChoice("n2", "connect", ("n0",))})
    with pytest.raises(ValueError, match=r"'n2/in' reads node 'n3', whose decisions come later"):
        LSTMController(CHOICES, {**GRAPH, "n2/in": NodeChoice("n2", "select", ("n0", "n3"))})
    with pytest.raises(ValueError, match="temperature must be positive"):
        LSTMController(CHOICES, temperature=0.0)
    with pytest.raises(ValueError, match=r"choice 'n2/op' got 'sep'; valid values: conv, pool"):
        _tiny_controller().evaluate({**_all_archs(CHOICES)[0], "n2/op": "sep"})


def test_state_of_another_space_is_refused_naming_both() -> None:
    cell = LSTMController.for_space(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2))
    macro = LSTMController.for_space(EnasMacroSpace(channels=4, layers=3), hidden_size=100)
    with pytest.raises(ValueError, match=r"saved for EnasMacroSpace with 6 choices .*policy is for DartsCellSpace"):
        cell.load_state_dict(macro.state_dict())
    other_cell = LSTMController.for_space(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2))
    other_cell.load_state_dict(cell.state_dict())  # same space: fine
    for a, b in zip(cell.parameters(), other_cell.parameters()):
        assert torch.equal(a, b)
