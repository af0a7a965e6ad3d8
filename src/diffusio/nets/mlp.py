"""A time-conditioned residual MLP for low-dimensional data (2-D toys, small vectors).

``TimeMLP(dim)(x, t, y=None)`` maps x (N, dim), t (N,) in [0, 1] (and optional class labels y)
to a tensor of x's shape, the interface :class:`~diffusio.core.model.DiffusionModel` calls.

Layout::

    c = act(Linear(act(Linear(embed(t))))) [+ class_embedding(y)]        time (and class) features
    h = Linear(x)
    h = h + act(W_k h + E_k c)          for k = 1..depth                 residual hidden layers
    out = Linear(h)                     zero-initialised: the initial output is exactly 0

The time features are added into every hidden layer, as DDPM adds its step embedding into every
residual block (Ho et al. 2020, App. B). Classes use ``nn.Embedding(num_classes + 1, hidden)``
whose last row (index ``num_classes``) is the *null* class used by classifier-free guidance (Ho &
Salimans 2021): ``y=None`` means the null class for every row.
"""

from __future__ import annotations

from torch import Tensor, nn

from .embeddings import ClassConditional, FourierEmbedding, SinusoidalEmbedding, check_num_classes

__all__ = ["ACTIVATIONS", "EMBEDDINGS", "TimeMLP", "count_parameters"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}
EMBEDDINGS: dict[str, type[nn.Module]] = {
    "fourier": FourierEmbedding,
    "sinusoidal": SinusoidalEmbedding,
}


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (buffers such as fixed Fourier weights excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _choice(kind: str, name: str, table: dict[str, type[nn.Module]]) -> type[nn.Module]:
    key = str(name).lower()
    if key not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[key]


class _Block(nn.Module):
    """``h + act(W h + E c)``: one hidden layer with the conditioning added before activation."""

    def __init__(self, hidden: int, activation: type[nn.Module]):
        super().__init__()
        self.linear = nn.Linear(hidden, hidden)
        self.cond = nn.Linear(hidden, hidden)
        self.act = activation()

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return h + self.act(self.linear(h) + self.cond(c))


class TimeMLP(ClassConditional, nn.Module):
    """Residual MLP ``net(x, t, y=None)`` for x of shape (N, dim); see the module docstring.

    Args:
        dim: data dimension D (the input width).
        out_dim: output width (default D; 2 D for a learned-variance model).
        hidden: hidden width.
        depth: number of residual hidden layers (each receives the time/class features).
        embedding: ``fourier`` (Gaussian Fourier features, Tancik et al. 2020; Score SDE App.
            C.1) or ``sinusoidal`` (DDPM Sec. 4 / App. B).
        embed_dim: width of the raw time embedding.
        num_classes: number of classes for conditioning (``None``: unconditional). Index
            ``num_classes`` is the null class.
        activation: ``silu``, ``gelu``, ``relu``, ``tanh`` or ``softplus``.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        embedding: str = "fourier",
        embed_dim: int = 64,
        num_classes: int | None = None,
        activation: str = "silu",
        out_dim: int | None = None,
    ):
        super().__init__()
        out_dim = dim if out_dim is None else out_dim
        checks = (
            ("dim", dim, 1),
            ("hidden", hidden, 1),
            ("depth", depth, 0),
            ("out_dim", out_dim, 1),
        )
        for label, value, low in checks:
            if int(value) != value or value < low:
                raise ValueError(f"{label} must be an integer >= {low}, got {value!r}")
        check_num_classes(num_classes)
        act = _choice("activation", activation, ACTIVATIONS)
        embed_cls = _choice("embedding", embedding, EMBEDDINGS)
        self.dim, self.hidden, self.depth = int(dim), int(hidden), int(depth)
        self.out_dim = int(out_dim)
        self.embedding_name, self.activation_name = str(embedding).lower(), str(activation).lower()

        self._init_conditioning(embed_cls(embed_dim), hidden, act, num_classes)
        self.cond_act = act()
        self.input = nn.Linear(self.dim, hidden)
        self.blocks = nn.ModuleList(_Block(hidden, act) for _ in range(self.depth))
        self.output = nn.Linear(hidden, self.out_dim)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | int | None = None) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(
                f"TimeMLP expected input of shape (N, {self.dim}), got {tuple(x.shape)}"
            )
        c = self.cond_act(self._conditioning(x, t, y))
        h = self.input(x)
        for block in self.blocks:
            h = block(h, c)
        return self.output(h)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden={self.hidden}, depth={self.depth}, "
            f"embedding={self.embedding_name!r}, num_classes={self.num_classes}, "
            f"activation={self.activation_name!r}"
        )
