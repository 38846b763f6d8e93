import pytest
import torch

from nmt.dropout import Dropout, dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_drops_a_fraction_p_everywhere_and_keeps_the_expectation(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(400_000, dtype=dtype)
    y = dropout(x, p).float()
    kept = y != 0
    # Even and odd positions come from the two halves of one 32-bit draw: both must be uniform.
    for half in (kept[0::2], kept[1::2]):
        assert half.float().mean().item() == pytest.approx(1 - p, abs=0.005)
    scale = y[kept].unique()
    assert scale.numel() == 1 and scale.item() == pytest.approx(1 / (1 - p), rel=1e-2)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_gradient_flows_through_the_kept_elements_only():
    torch.manual_seed(1)
    x = torch.randn(64, 32, requires_grad=True)
    y = dropout(x, 0.4)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.equal(x.grad != 0, kept)
    assert torch.allclose(x.grad[kept], y.detach()[kept] / x.detach()[kept])


def test_masks_follow_the_seed_and_eval_is_the_identity():
    x = torch.randn(10, 7)
    torch.manual_seed(3)
    a = dropout(x, 0.3)
    torch.manual_seed(3)
    assert torch.equal(a, dropout(x, 0.3))
    assert not torch.equal(a, dropout(x, 0.3))
    layer = Dropout(0.3).eval()
    assert layer(x) is x and dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        Dropout(1.0)
