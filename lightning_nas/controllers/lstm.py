r"""The ENAS controller: an LSTM that makes a space's decisions one after another (Pham et al., ICML 2018, Sec. 2).

It works on any space's list of choices. Each decision is one LSTM step; the step's hidden state ``h`` gives the
logits, the decision is drawn, and its embedding is the next step's input:

* a plain categorical choice (an op): logits ``W_soft h`` (one decoder and one embedding per distinct candidate
  tuple, so all op choices over the same ops share them, as in the reference code);
* an input selection (a :class:`~lightning_nas.spaces.NodeChoice` of kind ``"select"``): the paper's attention
  over the nodes built so far, ``logit_j = v^T tanh(W_1 h_j + W_2 h)``, where ``h_j`` is node ``j``'s *anchor*;
  the chosen node's anchor is the next input;
* skip connections (consecutive ``"connect"`` choices of one node, decided in one step as in macro search): each
  is a Bernoulli with ``p_j = sigmoid(logit_j)`` from the same attention; the next input is the mean of the chosen
  anchors, and ``KL(Bernoulli(p_j) || Bernoulli(rho))`` is the skip penalty.

A node's anchor is the hidden state of one more LSTM step taken after the node's last decision (input: that
decision's embedding), after which the next decision starts again from the learned start embedding ``g``; a source
node that has no decisions of its own (a cell input) gets an anchor of zeros and an attention key from an LSTM
step on ``g``, made just before it is first needed (reference code: ``src/cifar10/micro_controller.py``,
``_build_sampler``, https://github.com/melodyguan/enas/blob/00787a5f5162814ce8f62a603b76738d240df8df/src/cifar10/micro_controller.py).

Logits are shaped as ``C tanh(logits / T)`` (temperature ``T``, tanh constant ``C``; Sec. 3.1); categorical
choices use ``C / op_tanh_reduce``. Parameters start uniform in ``[-0.1, 0.1]`` (Sec. 3.1).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from lightning_nas.arch import Arch, Choice, validate_arch
from lightning_nas.controllers.base import Policy, PolicySample
from lightning_nas.spaces.base import NodeChoice

__all__ = ["LSTMController"]


@dataclass(frozen=True)
class _Step:
    """One LSTM step of the plan: which choices it decides and which anchors it needs or writes."""

    kind: Literal["categorical", "select", "connect"]
    choices: tuple[int, ...]  # indices into the policy's choices (several for a group of connect choices)
    group: int  # decoder/embedding index of a categorical step, -1 otherwise
    sources: tuple[str, ...]  # select: one node per candidate; connect: one node per choice
    inputs_before: tuple[str, ...]  # choice-less source nodes whose anchors are made just before this step
    anchors_after: tuple[str, ...]  # nodes whose last decision this step makes


class LSTMController(Policy):
    """The ENAS LSTM policy over any space's choices; returns ``(arch, log_prob, entropy, skip_penalty)``.

    Args:
        choices: the space's choices, in the order they are decided.
        node_choices: the space's graph (see :meth:`~lightning_nas.spaces.SearchSpace.node_choices`); input
            selections among earlier nodes use attention, ``connect`` choices are skip connections.
        hidden_size: LSTM units (100 in the paper, Sec. 3.1).
        temperature: logits are divided by it (5.0 in the paper); ``None`` leaves them.
        tanh_constant: logits become ``C tanh(logits)`` (2.5 in the paper); ``None`` leaves them.
        op_tanh_reduce: categorical (op) choices use ``C / op_tanh_reduce`` (the reference code's micro search uses
            ``C = 1.1``, reduce 2.5, no temperature).
        skip_target: ``rho``, the prior probability of a skip connection in the skip penalty (0.4).
        init_range: parameters start uniform in ``[-init_range, init_range]`` (0.1).
        space_name: the space's name, for checkpoints and messages.

    Raises:
        ValueError: no choices, or ``node_choices`` that do not fit the choices (unknown names, a selection with
            the wrong number of sources, a ``connect`` choice that is not ``(0, 1)``, a node read before its own
            decisions are made).

    Example:
        >>> from lightning_nas.sampling import step_generator
        >>> from lightning_nas.spaces import DartsCellSpace
        >>> space = DartsCellSpace(in_channels=1, channels=4, layers=3, steps=2)
        >>> controller = LSTMController.for_space(space)
        >>> arch, log_prob, entropy, _ = controller.sample(step_generator(0, 0))
        >>> space.validate_arch(arch) == arch
        True
        >>> torch.allclose(controller.evaluate(arch).log_prob, log_prob)
        True
    """

    def __init__(
        self,
        choices: Sequence[Choice],
        node_choices: Mapping[str, NodeChoice] | None = None,
        *,
        hidden_size: int = 100,
        temperature: float | None = 5.0,
        tanh_constant: float | None = 2.5,
        op_tanh_reduce: float = 1.0,
        skip_target: float = 0.4,
        init_range: float = 0.1,
        space_name: str = "space",
    ) -> None:
        super().__init__(choices, space_name)
        if hidden_size < 1:
            raise ValueError(f"hidden_size must be at least 1, got {hidden_size}")
        if temperature is not None and temperature <= 0:
            raise ValueError(f"temperature must be positive or None, got {temperature}")
        if not 0.0 < skip_target < 1.0:
            raise ValueError(f"skip_target must lie strictly between 0 and 1, got {skip_target}")
        if op_tanh_reduce <= 0:
            raise ValueError(f"op_tanh_reduce must be positive, got {op_tanh_reduce}")
        self.temperature, self.tanh_constant, self.op_tanh_reduce = temperature, tanh_constant, op_tanh_reduce
        self.skip_target = skip_target
        groups: dict[tuple[Any, ...], int] = {}
        self._plan = _compile_plan(self.choices, dict(node_choices or {}), groups)
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.start = nn.Parameter(torch.empty(1, hidden_size))  # g, the input of every first step
        self.decoders = nn.ModuleList(nn.Linear(hidden_size, len(candidates)) for candidates in groups)
        self.embeddings = nn.ModuleList(nn.Embedding(len(candidates), hidden_size) for candidates in groups)
        self.attn_anchor = nn.Linear(hidden_size, hidden_size, bias=False)  # W_1
        self.attn_query = nn.Linear(hidden_size, hidden_size, bias=False)  # W_2
        self.attn_score = nn.Linear(hidden_size, 1, bias=False)  # v
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -init_range, init_range)

    @classmethod
    def for_space(cls, space: Any, **kwargs: Any) -> LSTMController:
        """A controller over ``space.choices()`` with its ``node_choices()`` and class name."""
        return cls(space.choices(), space.node_choices(), space_name=type(space).__name__, **kwargs)

    def sample(self, generator: torch.Generator) -> PolicySample:
        return self._run(generator=generator)

    def evaluate(self, arch: Mapping[str, Any]) -> PolicySample:
        return self._run(given=validate_arch(arch, self.choices))

    def greedy(self) -> Arch:
        with torch.no_grad():
            return self._run(greedy=True).arch

    def decision_probabilities(self) -> dict[str, dict[str, float]]:
        """The distribution of each decision along the greedy rollout (the one :meth:`greedy` decodes).

        The controller is autoregressive, so a decision's distribution depends on the decisions before it; this
        reports each one given the most likely earlier decisions: one decoding pass, no sampling. A ``connect``
        choice is its Bernoulli ``{"0": 1 - p, "1": p}``. Each distribution sums to 1.

        Example:
            >>> from lightning_nas.spaces import DartsCellSpace
            >>> controller = LSTMController.for_space(DartsCellSpace(in_channels=1, channels=4, layers=3, steps=1))
            >>> probabilities = controller.decision_probabilities()
            >>> sorted(probabilities["normal/node2/in1"]), round(sum(probabilities["normal/node2/op0"].values()), 9)
            (['0', '1'], 1.0)
        """
        distributions: dict[str, dict[str, float]] = {}
        with torch.no_grad():
            self._run(greedy=True, distributions=distributions)
        return {c.name: distributions[c.name] for c in self.choices}

    # ------------------------------------------------------------------------------------------- the decoding
    def _run(
        self,
        *,
        generator: torch.Generator | None = None,
        given: Mapping[str, Any] | None = None,
        greedy: bool = False,
        distributions: dict[str, dict[str, float]] | None = None,
    ) -> PolicySample:
        """Decode the plan, drawing from ``generator``, following ``given``, or taking the argmax (``greedy``);
        each decision's distribution goes into ``distributions`` if given."""
        h = c = torch.zeros_like(self.start)
        inputs: Tensor = self.start
        anchors: dict[str, Tensor] = {}  # node -> anchor [H]
        keys: dict[str, Tensor] = {}  # node -> W_1 anchor-state [H]
        arch: Arch = {}
        log_probs: list[Tensor] = []
        entropies: list[Tensor] = []
        penalties: list[Tensor] = []
        for step in self._plan:
            for node in step.inputs_before:
                h, c = self.lstm(self.start, (h, c))
                anchors[node], keys[node] = torch.zeros_like(h[0]), self.attn_anchor(h)[0]
            h, c = self.lstm(inputs, (h, c))
            if step.kind == "connect":
                logits = self._shape(self._attend(h, [keys[s] for s in step.sources]), self.tanh_constant)
                bits = self._connect_bits(step, logits, arch, given, generator, greedy)
                if distributions is not None:
                    for choice_index, p in zip(step.choices, torch.sigmoid(logits.double()).tolist()):
                        distributions[self.choices[choice_index].name] = {"0": 1.0 - p, "1": p}
                log_probs.append((bits * F.logsigmoid(logits) + (1 - bits) * F.logsigmoid(-logits)).sum())
                entropies.append(_bernoulli_kl_or_entropy(logits, None))
                penalties.append(_bernoulli_kl_or_entropy(logits, self.skip_target))
                # The next input: the mean of the chosen anchors (the macro controller's rule).
                inputs = (bits @ torch.stack([anchors[s] for s in step.sources]))[None] / (1.0 + bits.sum())
            else:
                choice = self.choices[step.choices[0]]
                if step.kind == "categorical":
                    limit = None if self.tanh_constant is None else self.tanh_constant / self.op_tanh_reduce
                    logits = self._shape(self.decoders[step.group](h)[0], limit)
                else:
                    logits = self._shape(self._attend(h, [keys[s] for s in step.sources]), self.tanh_constant)
                index = _pick(logits, choice, given, generator, greedy)
                if distributions is not None:
                    probabilities = logits.double().softmax(-1).tolist()
                    distributions[choice.name] = {str(c): p for c, p in zip(choice.candidates, probabilities)}
                arch[choice.name] = choice.candidates[index]
                log_p = logits.log_softmax(-1)
                log_probs.append(log_p[index])
                entropies.append(-(log_p.exp() * log_p).sum())
                if step.kind == "categorical":
                    embedding: nn.Embedding = self.embeddings[step.group]  # type: ignore[assignment]
                    inputs = embedding.weight[index][None]
                else:
                    inputs = anchors[step.sources[index]][None]
            for node in step.anchors_after:
                h, c = self.lstm(inputs, (h, c))
                anchors[node], keys[node] = h[0], self.attn_anchor(h)[0]
                inputs = self.start
        penalty = torch.stack(penalties).mean() if penalties else self.start.new_zeros(())
        ordered = {c.name: arch[c.name] for c in self.choices}
        return PolicySample(ordered, torch.stack(log_probs).sum(), torch.stack(entropies).sum(), penalty)

    def _connect_bits(
        self,
        step: _Step,
        logits: Tensor,
        arch: Arch,
        given: Mapping[str, Any] | None,
        generator: torch.Generator | None,
        greedy: bool,
    ) -> Tensor:
        """The 0/1 decisions of a group of skip connections, each a Bernoulli ``sigmoid(logit_j)``; fills ``arch``."""
        bits = []
        for position, choice_index in enumerate(step.choices):
            name = self.choices[choice_index].name
            if given is not None:
                bit = int(given[name])
            elif greedy:
                bit = int(logits[position].item() > 0)
            else:
                bit = int(torch.rand((), generator=generator).item() < torch.sigmoid(logits[position]).item())
            arch[name] = bit
            bits.append(bit)
        return logits.new_tensor(bits)

    def _attend(self, h: Tensor, node_keys: list[Tensor]) -> Tensor:
        """``v^T tanh(W_1 h_j + W_2 h)`` for each node ``j``: shape ``[len(node_keys)]``."""
        return self.attn_score(torch.tanh(torch.stack(node_keys) + self.attn_query(h))).squeeze(-1)

    def _shape(self, logits: Tensor, tanh_constant: float | None) -> Tensor:
        if self.temperature is not None:
            logits = logits / self.temperature
        if tanh_constant is not None:
            logits = tanh_constant * torch.tanh(logits)
        return logits


def _bernoulli_kl_or_entropy(logits: Tensor, rho: float | None) -> Tensor:
    """Summed over ``p_j = sigmoid(logits_j)``: the entropy ``H(p_j)`` (``rho=None``) or ``KL(p_j || rho)``."""
    p, log_p, log_q = torch.sigmoid(logits), F.logsigmoid(logits), F.logsigmoid(-logits)
    if rho is None:
        return -(p * log_p + (1 - p) * log_q).sum()
    return (p * (log_p - math.log(rho)) + (1 - p) * (log_q - math.log(1 - rho))).sum()


def _pick(
    logits: Tensor, choice: Choice, given: Mapping[str, Any] | None, generator: torch.Generator | None, greedy: bool
) -> int:
    """The candidate index: the given one, the argmax, or an inverse-CDF draw from ``generator``."""
    if given is not None:
        return choice.candidates.index(given[choice.name])
    if greedy:
        return int(logits.argmax())
    cdf = logits.detach().float().softmax(-1).cumsum(-1).cpu()
    u = torch.rand((), generator=generator)
    return min(int((cdf <= u).sum()), len(choice.candidates) - 1)


def _compile_plan(
    choices: tuple[Choice, ...], graph: dict[str, NodeChoice], groups: dict[tuple[Any, ...], int]
) -> tuple[_Step, ...]:
    """Turn choices and their graph into LSTM steps; fills ``groups`` (candidate tuple -> decoder index)."""
    index_of = {c.name: i for i, c in enumerate(choices)}
    unknown = sorted(set(graph) - set(index_of))
    if unknown:
        raise ValueError(f"node_choices names unknown choices {unknown}; the choices are: {', '.join(index_of)}")
    last_decision = {info.node: index_of[name] for name, info in sorted(graph.items(), key=lambda kv: index_of[kv[0]])}
    referenced = {s for info in graph.values() for s in info.sources}
    steps: list[_Step] = []
    have_anchor: set[str] = set()
    i = 0
    while i < len(choices):
        choice, info = choices[i], graph.get(choices[i].name)
        members = [i]
        if info is not None and info.kind == "connect":
            while i + len(members) < len(choices):
                nxt = graph.get(choices[i + len(members)].name)
                if nxt is None or nxt.kind != "connect" or nxt.node != info.node:
                    break
                members.append(i + len(members))
        member_infos = [graph[choices[m].name] for m in members] if info is not None else []
        _check_choice(choice, info)
        for m, m_info in zip(members[1:], member_infos[1:]):
            _check_choice(choices[m], m_info)
        sources = tuple(s for m_info in member_infos for s in m_info.sources)
        for source in sources:
            if source in last_decision and last_decision[source] >= i:
                raise ValueError(
                    f"choice {choice.name!r} reads node {source!r}, whose decisions come later in the choices;"
                    " a node can only read nodes decided before it"
                )
        inputs_before = tuple(dict.fromkeys(s for s in sources if s not in last_decision and s not in have_anchor))
        have_anchor.update(inputs_before)
        anchors_after = tuple(node for node, at in last_decision.items() if at in members and node in referenced)
        have_anchor.update(anchors_after)
        if info is None or info.kind == "op":
            kind: Literal["categorical", "select", "connect"] = "categorical"
            group = groups.setdefault(tuple(choice.candidates), len(groups))
        else:
            kind, group = info.kind, -1
        steps.append(_Step(kind, tuple(members), group, sources, inputs_before, anchors_after))
        i += len(members)
    return tuple(steps)


def _check_choice(choice: Choice, info: NodeChoice | None) -> None:
    if info is None or info.kind == "op":
        return
    if info.kind == "select" and len(info.sources) != len(choice.candidates):
        raise ValueError(
            f"choice {choice.name!r} has {len(choice.candidates)} candidates but its NodeChoice names "
            f"{len(info.sources)} sources {info.sources}; a selection needs one source per candidate"
        )
    if info.kind == "connect" and set(choice.candidates) != {0, 1}:
        raise ValueError(f"connect choice {choice.name!r} must have candidates (0, 1), got {choice.candidates}")
