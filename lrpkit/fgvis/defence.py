"""The gradient-clipping defence against adversarial evidence.

Wagner, Koehler, Gindele, Hetzel, Wiedemer, Behnke, "Interpretable and Fine-Grained Visual
Explanations for Convolutional Neural Networks", CVPR 2019, Sec. 3.2, eq. 4-6.

A neuron may be activated by the explanation ``e`` only as far as the original image ``x``
activated it (eq. 4): after every nonlinearity ``h`` of the network except the output,

    min(0, h(x)) <= h(e) <= max(0, h(x)).

Rather than adding a clipping layer (eq. 5, which would change the model), the constraint is
enforced in the backward pass only (eq. 6): the error signal ``gamma_bar`` arriving at the
nonlinearity's output passes where the explanation's activation lies within the bounds and is
zeroed elsewhere, ``gamma = gamma_bar * [h(e) <= b_u] * [h(e) >= b_l]``.  The forward pass is
the identity (the model's outputs are unchanged, bit for bit).

Implementation: a :class:`torch.overrides.TorchFunctionMode` active around the model's forward
intercepts the activation functions wherever they are called -- every activation declared in
:mod:`lrpkit._activations`: rectifiers (ReLU, ReLU6, hard-tanh, ``clamp``), leaky ones, gated
ones (SiLU, GELU, Hardswish, Mish) and squashing ones (Sigmoid, Hardsigmoid, Tanh), as modules
(``nn.ReLU6`` ...) and as functions (``F.relu`` / ``torch.relu`` / ``F.silu`` ... inside
``forward``) -- so the model gets no hooks and no new modules.  Calls on non-floating tensors
(a clamp of integer indices) are not neurons and pass untouched.  A recording pass on ``x``
stores ``h(x)`` of every call in call order; in the explanation's forward the ``k``-th call
is matched with the ``k``-th recorded activation (a model whose forward calls a different
sequence of nonlinearities raises ``RuntimeError``).
In-place activations (``nn.ReLU(inplace=True)``) are computed out of place; their returned
value is the same.  An activation whose output is the model's output (e.g. a final sigmoid)
is not clipped ("besides the final classification layer").  ReLU takes a fused path (one
autograd node: ``g * [0 < z <= h(x)]``); other activations a gate node after them.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from .._activations import FUNCTIONS, activation_input, out_of_place

__all__ = ["Defence", "NONLINEARITIES"]

#: The intercepted activation functions (all calls after which eq. 4 is enforced): every
#: functional form of :data:`lrpkit._activations.ACTIVATIONS` (rectifiers, leaky, gated and
#: squashing activations; module forms dispatch to these).
NONLINEARITIES = frozenset(FUNCTIONS)
_RELU = frozenset(f for f, a in FUNCTIONS.items() if a.name == "ReLU")


class _ClippedReLU(torch.autograd.Function):
    """ReLU whose backward passes only where ``0 < z <= h(x)`` (eq. 6 with b_l = 0)."""

    @staticmethod
    def forward(ctx, z, upper):
        y = z.clamp(min=0)
        ctx.save_for_backward((z > 0) & (y <= upper))
        return y

    @staticmethod
    def backward(ctx, g):
        (gate,) = ctx.saved_tensors
        return g * gate, None


class _Gate(torch.autograd.Function):
    """Identity forward; backward ``g * gate`` (eq. 6)."""

    @staticmethod
    def forward(ctx, y, gate):
        ctx.save_for_backward(gate)
        return y.clone()

    @staticmethod
    def backward(ctx, g):
        (gate,) = ctx.saved_tensors
        return g * gate, None


class _Mode(TorchFunctionMode):
    def __init__(self, owner: Defence, phase: str):
        super().__init__()
        self.owner = owner
        self.phase = phase
        self.k = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in NONLINEARITIES:
            return func(*args, **kwargs)
        z = activation_input(args, kwargs)
        if not (isinstance(z, torch.Tensor) and z.is_floating_point()):
            return func(*args, **kwargs)     # e.g. a clamp of integer indices: not a neuron
        k = self.k
        self.k += 1
        own = self.owner
        if self.phase == "record":
            y = out_of_place(func, args, kwargs)
            own._refs.append(y.detach())
            return y
        if k >= len(own._refs):
            raise RuntimeError(f"defence: the forward on the explanation calls more nonlinearities "
                               f"({k + 1}) than the recorded forward on the image ({len(own._refs)}); "
                               f"the model's control flow must not depend on its input")
        if k == own._output_index:
            return out_of_place(func, args, kwargs)
        ref = own._ref(k)
        if func in _RELU:
            if z.shape != ref.shape:
                raise RuntimeError(own._shape_msg(k, z.shape, ref.shape))
            return _ClippedReLU.apply(z, ref)
        y = out_of_place(func, args, kwargs)
        if y.shape != ref.shape:
            raise RuntimeError(own._shape_msg(k, y.shape, ref.shape))
        gate = (y >= ref.clamp(max=0)) & (y <= ref.clamp(min=0))
        return _Gate.apply(y, gate)


class Defence:
    """Eq. 4-6 for one batch of images ``x``: record ``h(x)``, then clip in backward passes.

    ::

        d = Defence(model)
        d.record(x)                     # forward on the images (no gradient)
        with d.clip(idx):               # forward on explanations of images x[idx]
            out = model(e)              # identical output; gradient gated by eq. 6

    The model itself is not touched (no hooks, no new modules, parameters as they are).
    ``enabled=False`` makes both steps no-ops (the undefended optimisation).
    """

    def __init__(self, model: torch.nn.Module, enabled: bool = True):
        self.model = model
        self.enabled = bool(enabled)
        self._refs: list[torch.Tensor] = []
        self._output_index = -1
        self._idx: torch.Tensor | None = None
        self._cache: dict[int, torch.Tensor] = {}
        self._recorded = False

    @property
    def n_nonlinearities(self) -> int:
        """Number of clipped activation calls per forward (after :meth:`record`)."""
        return len(self._refs) - (self._output_index >= 0)

    def record(self, x: torch.Tensor) -> torch.Tensor:
        """Forward ``x`` and store every activation ``h(x)``; returns the model's output."""
        self._refs = []
        self._output_index = -1
        self._cache = {}
        self._recorded = True
        if not self.enabled:
            with torch.no_grad():
                return self.model(x)
        with torch.no_grad(), _Mode(self, "record"):
            out = self.model(x)
        last = self._refs[-1] if self._refs else None
        if (last is not None and isinstance(out, torch.Tensor) and out.shape == last.shape
                and out.data_ptr() == last.data_ptr()):
            self._output_index = len(self._refs) - 1   # the output's own nonlinearity: not clipped
        return out

    def _ref(self, k: int) -> torch.Tensor:
        if self._idx is None:
            return self._refs[k]
        r = self._cache.get(k)
        if r is None:
            r = self._cache[k] = self._refs[k].index_select(0, self._idx)
        return r

    def _shape_msg(self, k: int, got, want) -> str:
        return (f"defence: nonlinearity call {k} has shape {tuple(got)} on the explanation but "
                f"{tuple(want)} on the image; explain the same batch that was recorded")

    def clip(self, idx: torch.Tensor | None = None) -> Any:
        """Context for one forward on explanations of the recorded images ``x[idx]`` (all if None)."""
        if not self._recorded:
            raise RuntimeError("defence: call record(x) before clip()")
        if not self.enabled or not self._refs:   # off, or a model without nonlinearities
            import contextlib

            return contextlib.nullcontext()
        if idx is None or (self._idx is not None and not torch.equal(idx, self._idx)) or \
                (idx is not None and self._idx is None):
            self._cache = {}
        self._idx = idx
        return _Mode(self, "clip")
