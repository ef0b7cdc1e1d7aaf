"""How a differentiable space turns an edge's architecture parameters into the weights of its ops.

A :class:`Relaxation` maps one alpha matrix ``[edges, ops]`` (one per cell type: ``"normal"``, ``"reduce"``, or the
NAS-Bench-201 ``"cell"``) to the weights the mixed ops use in a forward pass, optionally with one op per edge to
run alone (one-path forward). The space holds one relaxation; DARTS uses the softmax, its siblings swap in theirs:

* :class:`Relaxation` - ``softmax(alpha)`` (DARTS, Liu et al., 2019, Eq. 2);
* :class:`GumbelRelaxation` - a hard Gumbel-max one-hot with a straight-through gradient (GDAS, Dong & Yang, 2019);
* :class:`EdgeNormalization` - ``softmax(alpha) * softmax(beta)`` over each node's incoming edges (PC-DARTS);
* :class:`DirichletRelaxation` - a reparameterised Dirichlet sample (DrNAS, Chen et al., 2021);
* :class:`AuxiliarySkip` - ``softmax(alpha)`` and an auxiliary skip's coefficient ``beta`` (DARTS-, Chu et al.,
  2021).

:meth:`Relaxation.probabilities` is the deterministic per-edge distribution (summing to 1) that the space reports
and exports from; :meth:`Relaxation.strengths` ranks the edges of a node when a genotype keeps the strongest two.
Random relaxations draw their noise from ``seeded_random_ops(derive_seed(seed, key))`` after :meth:`resample`, so
every forward until the next resample (the weight step, the unrolled steps of a second-order gradient) sees the
same sample, every rank the same noise, and a resumed run the noise of the uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from lightning_nas.sampling import derive_seed, seeded_random_ops

__all__ = [
    "AuxiliarySkip",
    "DirichletRelaxation",
    "EdgeNormalization",
    "EdgeWeights",
    "GumbelRelaxation",
    "Relaxation",
    "gumbel_straight_through",
]

EdgeWeights = tuple[Tensor, list[int] | None]
"""The op weights ``[edges, ops]`` of one cell type, and per edge the one op to run (``None``: run every op)."""


class Relaxation(nn.Module):
    """``softmax(alpha)`` over each edge's ops: the DARTS relaxation, and the base of the others.

    Example:
        >>> weights, chosen = Relaxation()(torch.zeros(2, 4), "cell")
        >>> weights[0].tolist(), chosen
        ([0.25, 0.25, 0.25, 0.25], None)
    """

    def __init__(self) -> None:
        super().__init__()
        self._seed = 0

    def forward(self, alpha: Tensor, key: str) -> EdgeWeights:
        """The op weights of cell type ``key`` in this forward pass (sampled ones while training, if random)."""
        return alpha.softmax(-1), None

    def probabilities(self, alpha: Tensor, key: str) -> Tensor:
        """The deterministic distribution over each edge's ops (no gradient), which the architecture is read from."""
        return _at_least_float(alpha.detach()).softmax(-1)

    def strengths(self, alpha: Tensor, key: str) -> Tensor:
        """Per edge and op, the weight a genotype ranks edges by (default :meth:`probabilities`)."""
        return self.probabilities(alpha, key)

    def resample(self, seed: int) -> None:
        """Draw new noise (from ``seed``) for the coming forward passes; deterministic relaxations ignore it."""
        self._seed = seed

    def _noise_seed(self, key: str) -> int:
        return derive_seed(self._seed, key)


def gumbel_straight_through(alpha: Tensor, gumbel: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    """GDAS's sample: ``h = onehot(argmax(alpha + g)) - sg(p) + p`` with ``p = softmax((alpha + g) / tau)``.

    The value is the hard one-hot ``h``; the gradient is that of the soft ``p`` (straight-through).
    Returns ``(h, index)`` with ``index`` the chosen op per row.

    Example:
        >>> h, index = gumbel_straight_through(torch.tensor([[0.0, 2.0]]), torch.zeros(1, 2), tau=1.0)
        >>> h.tolist(), index.tolist()
        ([[0.0, 1.0]], [1])
    """
    logits = alpha + gumbel
    soft = (logits / tau).softmax(-1)
    index = logits.argmax(-1)
    hard = torch.nn.functional.one_hot(index, alpha.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft, index


class GumbelRelaxation(Relaxation):
    """GDAS (Dong & Yang, CVPR 2019, Eq. 3-5): one op per edge, drawn by Gumbel-max, straight-through gradient.

    While training each edge runs only its sampled op, ``h_k * op_k(x)``; in eval mode each edge runs its most likely
    op (``argmax alpha``, what the search returns). :attr:`tau` is the softmax temperature of the gradient; the
    method anneals it.

    Args:
        tau: initial temperature (10 in the paper).
    """

    def __init__(self, tau: float = 10.0) -> None:
        super().__init__()
        self.tau = tau

    def forward(self, alpha: Tensor, key: str) -> EdgeWeights:
        if self.training:
            with seeded_random_ops(self._noise_seed(key), alpha.device):
                gumbel = -torch.empty_like(alpha).exponential_().log()
        else:
            gumbel = torch.zeros_like(alpha)
        hard, index = gumbel_straight_through(alpha, gumbel, self.tau)
        return hard, index.tolist()


class EdgeNormalization(Relaxation):
    """PC-DARTS edge normalisation (Xu et al., ICLR 2020, Sec. 3.2, Eq. 5): ``w_{e,k} = softmax(alpha_e)_k * b_e``
    with ``b = softmax(beta)`` over the incoming edges of each node.

    The betas are architecture parameters (zero at start: equal edge weights); genotypes rank edges by
    ``softmax(alpha) * b`` (:meth:`strengths`), as the reference code does.

    Args:
        edge_groups: per cell type, the edge indices of each node's incoming edges (see the spaces' ``edge_groups``).

    Example:
        >>> norm = EdgeNormalization({"cell": [[0], [1, 2]]})
        >>> weights, _ = norm(torch.zeros(3, 2), "cell")
        >>> weights.sum(-1).tolist()
        [1.0, 0.5, 0.5]
    """

    def __init__(self, edge_groups: Mapping[str, Sequence[Sequence[int]]]) -> None:
        super().__init__()
        self.edge_groups = {key: [list(group) for group in groups] for key, groups in edge_groups.items()}
        self.betas = nn.ParameterDict(
            {key: nn.Parameter(torch.zeros(sum(len(g) for g in groups))) for key, groups in self.edge_groups.items()}
        )

    def edge_weights(self, key: str) -> Tensor:
        """``b_e``: the softmax of the betas over each node's incoming edges."""
        if key not in self.betas:
            raise KeyError(f"no edge normalisation for cell type {key!r}; it has {', '.join(self.betas)}")
        beta = self.betas[key]
        weights = torch.empty_like(beta)
        for group in self.edge_groups[key]:
            weights[group] = beta[group].softmax(0)
        return weights

    def forward(self, alpha: Tensor, key: str) -> EdgeWeights:
        return alpha.softmax(-1) * self.edge_weights(key).unsqueeze(-1), None

    def strengths(self, alpha: Tensor, key: str) -> Tensor:
        return self.probabilities(alpha, key) * self.edge_weights(key).detach().float().unsqueeze(-1)


class DirichletRelaxation(Relaxation):
    """DrNAS (Chen et al., ICLR 2021, Sec. 2.2): op weights ``~ Dir(elu(alpha) + 1)`` with pathwise gradients.

    The sample is ``G / sum(G)`` with ``G_k ~ Gamma(c_k, 1)``, ``c = elu(alpha) + 1`` (the reference code's
    concentration): a Dirichlet sample whose gradient is the implicit reparameterisation of the Gamma draws
    (``dG/dc = -(dF/dc) / p(G)``, Figurnov et al., 2018). In eval mode the weights are the mean ``c / sum(c)``,
    which the architecture is read from (``argmax`` of the mean).

    Example:
        >>> relax = DirichletRelaxation().eval()
        >>> relax(torch.zeros(1, 4), "cell")[0].tolist()
        [[0.25, 0.25, 0.25, 0.25]]
    """

    @staticmethod
    def concentration(alpha: Tensor) -> Tensor:
        """``c = elu(alpha) + 1 > 0``."""
        return torch.nn.functional.elu(alpha) + 1

    def forward(self, alpha: Tensor, key: str) -> EdgeWeights:
        concentration = self.concentration(alpha)
        if not self.training:
            return concentration / concentration.sum(-1, keepdim=True), None
        with seeded_random_ops(self._noise_seed(key), alpha.device):
            gamma = torch.distributions.Gamma(concentration, torch.ones_like(concentration)).rsample()
        return gamma / gamma.sum(-1, keepdim=True), None

    def probabilities(self, alpha: Tensor, key: str) -> Tensor:
        concentration = self.concentration(_at_least_float(alpha.detach()))
        return concentration / concentration.sum(-1, keepdim=True)


class AuxiliarySkip(Relaxation):
    """DARTS- (Chu et al., ICLR 2021, Sec. 3.2, Eq. 3): ``edge(x) = sum_k softmax(alpha)_k op_k(x) + beta * skip(x)``.

    The extra ``beta * skip(x)`` on every edge is the paper's auxiliary skip connection; it takes the advantage of
    residual paths away from the candidate skip, so the alphas need not crowd onto it. ``beta`` is a constant
    (no gradient) that the method decays to 0, where the relaxation is DARTS's. The weights are ``softmax(alpha)``
    with ``beta`` appended as one more column, which :class:`~lightning_nas.ops.MixedOp` reads as the auxiliary
    skip's coefficient: on stride-1 edges the skip is the identity, shared with the candidate ``skip_connect``; on
    stride-2 edges it is the edge's own factorised reduction when the space has them
    (:meth:`~lightning_nas.spaces.DifferentiableSpace.use_auxiliary_skips`, as in the reference code), else the
    candidate's. Probabilities and the exported architecture come from the alphas alone.

    Args:
        ops: the candidate op names, which must include ``skip_connect``.
        beta: the initial coefficient (1 in the paper).

    Example:
        >>> aux = AuxiliarySkip(("none", "skip_connect"), beta=0.5)
        >>> aux(torch.zeros(1, 2), "cell")[0].tolist()
        [[0.5, 0.5, 0.5]]
    """

    def __init__(self, ops: Sequence[str], beta: float = 1.0) -> None:
        super().__init__()
        if "skip_connect" not in ops:
            raise ValueError(f"an auxiliary skip needs 'skip_connect' among the ops; got {list(ops)}")
        self.beta = beta

    def forward(self, alpha: Tensor, key: str) -> EdgeWeights:
        weights = alpha.softmax(-1)
        return torch.cat([weights, weights.new_full((*weights.shape[:-1], 1), self.beta)], -1), None


def _at_least_float(tensor: Tensor) -> Tensor:
    """``tensor`` in float32, or in its own dtype when that is wider (double probabilities stay double)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))
