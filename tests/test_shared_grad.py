import pytest
import torch

from nmt.shared_grad import Shared, linear, matmul


def _loop(shared: bool, weight, bias, memory, inputs):
    """A recurrence reading a weight (with bias), attention keys and values at every step."""
    w = Shared(weight, bias) if shared else None
    keys = Shared(memory) if shared else memory
    values = Shared(memory) if shared else memory
    h, total = torch.zeros(3, 1, 6, dtype=weight.dtype), 0.0
    for x in inputs:
        y = linear(x + h[..., :5], w) if shared else torch.nn.functional.linear(x + h[..., :5], weight, bias)
        scores = linear(y[..., :5], keys)  # (3, 1, src_len)
        h = torch.tanh(y) + matmul(scores.softmax(-1), values).sum(-1, keepdim=True)
        total = total + h.square().sum()
    return total


def test_gradients_summed_in_one_product_equal_autograds_step_by_step():
    torch.manual_seed(0)
    weight = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    bias = torch.randn(6, dtype=torch.double, requires_grad=True)
    memory = torch.randn(3, 4, 5, dtype=torch.double, requires_grad=True)
    inputs = [torch.randn(3, 1, 5, dtype=torch.double, requires_grad=True) for _ in range(4)]
    leaves = [weight, bias, memory, *inputs]
    plain = torch.autograd.grad(_loop(False, weight, bias, memory, inputs), leaves)
    shared = torch.autograd.grad(_loop(True, weight, bias, memory, inputs), leaves)
    for a, b in zip(plain, shared, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():  # search and validation: plain products, the same values
        assert torch.equal(_loop(True, weight, bias, memory, inputs), _loop(False, weight, bias, memory, inputs))


def test_a_step_that_does_not_reach_the_loss_adds_nothing():
    weight = torch.randn(4, 3, requires_grad=True)
    w = Shared(weight)
    used, unused = linear(torch.ones(2, 3), w), linear(torch.full((2, 3), 5.0), w)
    assert unused.requires_grad
    used.sum().backward()
    assert torch.allclose(weight.grad, torch.full((4, 3), 2.0))


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs CPU bf16")
def test_under_bf16_autocast_the_weight_is_cast_once_and_its_gradient_reaches_it_in_fp32():
    torch.manual_seed(0)
    weight = torch.randn(6, 5, requires_grad=True)
    x = torch.randn(4, 7, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        w = Shared(weight)
        y = torch.stack([linear(x[i], w) for i in range(4)])
    assert w.value.dtype == torch.bfloat16 and y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert weight.grad.dtype == torch.float32
    expected = x.reshape(-1, 5).bfloat16().float().sum(0).expand(6, 5)
    assert torch.allclose(weight.grad, expected, rtol=1e-2, atol=1e-2)
