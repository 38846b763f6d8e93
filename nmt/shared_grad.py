"""Matrix products whose second operand every step of a loop reads (a weight, the attention memory), with that
operand's gradient summed over the steps in one product.

Through plain autograd, a weight read at each of T recurrent steps gets T weight-gradient products, each added into
the gradient so far (under bf16 autocast, added in bf16); an attention memory read at each decoder step gets T
full-size gradients added one by one. A `Shared` operand instead keeps each step's input and output gradient, and
when backward reaches the operand (autograd runs it after every step that read it) computes its gradient in one
product over all steps: the same sum, with one rounding, and a matrix product large enough to run near the peak.
"""

from __future__ import annotations

import torch
from torch.autograd import Function


class Shared:
    """`value` (..., k, n), optionally with `bias` (n,), read by `linear` (x @ value.mT + bias) or `matmul`
    (x @ value) at every step of a loop, in `dtype` (default: the autocast dtype when autocast is on, else the
    value's own), cast once; each step's input is cast to it. Without gradients (search, validation) the products
    are plain ones."""

    def __init__(self, value: torch.Tensor, bias: torch.Tensor | None = None, dtype: torch.dtype | None = None):
        device = value.device.type
        if dtype is None:
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else value.dtype
        value, bias = value.to(dtype), None if bias is None else bias.to(dtype)
        self.value, self.bias = value, bias
        needs_grad = torch.is_grad_enabled() and (value.requires_grad or (bias is not None and bias.requires_grad))
        self.steps: list[tuple[torch.Tensor, torch.Tensor, bool]] = []  # (input, output gradient, transposed)
        self.token = _Gather.apply(value, bias, self.steps) if needs_grad else None


def _product(x: torch.Tensor, value: torch.Tensor, bias: torch.Tensor | None, transposed: bool) -> torch.Tensor:
    m = value.mT if transposed else value
    with torch.autocast(x.device.type, enabled=False):  # in the operand's dtype, which may be above autocast's
        if bias is not None and x.dim() == 2:
            return torch.addmm(bias, x, m)
        y = torch.matmul(x, m)
        return y if bias is None else y + bias


class _Gather(Function):
    """Its output, a zero-size token, is an input of every step's product: autograd runs this backward after all
    of theirs, when `steps` holds every step's input and output gradient."""

    @staticmethod
    def forward(ctx, value, bias, steps):  # noqa: ANN001, ANN205
        ctx.steps, ctx.has_bias = steps, bias is not None
        return value.new_empty(0)

    @staticmethod
    def backward(ctx, _):  # noqa: ANN001, ANN205
        steps = ctx.steps
        if not steps:
            return None, None, None
        xs = steps[0][0] if len(steps) == 1 else torch.cat([x for x, _, _ in steps], dim=-2)  # (..., all rows, in)
        dys = steps[0][1] if len(steps) == 1 else torch.cat([dy for _, dy, _ in steps], dim=-2)  # (..., rows, out)
        transposed = steps[0][2]
        grad = dys.mT @ xs if transposed else xs.mT @ dys  # the shape of value
        bias = dys.reshape(-1, dys.size(-1)).sum(0) if ctx.has_bias else None
        steps.clear()
        return grad, bias, None


class _Product(Function):
    @staticmethod
    def forward(ctx, x, token, value, bias, transposed, steps):  # noqa: ANN001, ANN205
        x_dtype, x = x.dtype, x.to(value.dtype)
        ctx.save_for_backward(x)
        ctx.value, ctx.transposed, ctx.steps, ctx.x_dtype = value, transposed, steps, x_dtype
        return _product(x, value, bias, transposed)

    @staticmethod
    def backward(ctx, dy):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        dy = dy.to(x.dtype)
        ctx.steps.append((x, dy, ctx.transposed))
        dx = None
        if ctx.needs_input_grad[0]:
            dx = (dy @ ctx.value if ctx.transposed else dy @ ctx.value.mT).to(ctx.x_dtype)
        return dx, dy.new_zeros(0), None, None, None, None


def _apply(x: torch.Tensor, op: Shared | torch.Tensor, transposed: bool) -> torch.Tensor:
    if isinstance(op, torch.Tensor):
        return torch.matmul(x, op.mT if transposed else op)
    lead = x.shape[:-1]
    if op.value.dim() == 2:  # a weight: every row of every step is one row of the product
        x = x.reshape(-1, x.size(-1))
    if op.token is None:
        y = _product(x.to(op.value.dtype), op.value, op.bias, transposed)
    else:
        bias = None if op.bias is None else op.bias.detach()
        y = _Product.apply(x, op.token, op.value.detach(), bias, transposed, op.steps)
    return y.view(*lead, y.size(-1))


def linear(x: torch.Tensor, op: Shared | torch.Tensor) -> torch.Tensor:
    """x (..., rows, k) @ op.mT (+ bias): `nn.functional.linear` for a weight (n, k), or attention scores against
    keys (batch, src_len, k)."""
    return _apply(x, op, transposed=True)


def matmul(x: torch.Tensor, op: Shared | torch.Tensor) -> torch.Tensor:
    """x (..., rows, k) @ op (..., k, n)."""
    return _apply(x, op, transposed=False)
