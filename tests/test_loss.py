import pytest
import torch
import torch.nn.functional as F

from nmt.loss import sequence_loss
from nmt.tokenizer import PAD_ID


def test_loss_is_sum_over_steps_of_per_step_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11)
    targets = torch.randint(4, 11, (3, 5))
    targets[1, 3:] = PAD_ID
    targets[2, 1:] = PAD_ID
    loss, nll = sequence_loss(logits, targets)
    expected = 0.0
    for t in range(5):
        for b in range(3):
            if targets[b, t] != PAD_ID:
                expected += F.cross_entropy(logits[b, t : t + 1], targets[b, t : t + 1]).item()
    assert abs(loss.item() - expected) < 1e-4
    assert abs(nll.item() - expected) < 1e-4


def test_padding_does_not_change_the_loss():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 9)
    targets = torch.randint(4, 9, (2, 4))
    targets[0, 2:] = PAD_ID
    padded_logits = torch.cat([logits, torch.randn(2, 3, 9)], dim=1)
    padded_targets = torch.cat([targets, torch.full((2, 3), PAD_ID)], dim=1)
    a, _ = sequence_loss(logits, targets)
    b, _ = sequence_loss(padded_logits, padded_targets)
    assert torch.allclose(a, b)
    # and garbage logits at padded positions do not matter
    padded_logits[0, 2:] = 1e4
    c, _ = sequence_loss(padded_logits, padded_targets)
    assert torch.allclose(a, c)


def test_label_smoothing_matches_torch():
    torch.manual_seed(2)
    logits = torch.randn(2, 6, 13)
    targets = torch.randint(4, 13, (2, 6))
    targets[1, 4:] = PAD_ID
    loss, nll = sequence_loss(logits, targets, label_smoothing=0.1)
    ref = F.cross_entropy(
        logits.view(-1, 13), targets.view(-1), ignore_index=PAD_ID, label_smoothing=0.1, reduction="sum"
    )
    assert torch.allclose(loss, ref, atol=1e-4)
    plain, _ = sequence_loss(logits, targets)
    assert torch.allclose(nll, plain)


def _reference(logits, targets, label_smoothing, scale):
    """The loss as plain autograd computes it: log-softmax, gather, mean for smoothing, masked sum."""
    log_probs = torch.log_softmax(logits.double(), dim=-1)
    nll = -log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    loss = (1 - label_smoothing) * nll - label_smoothing * log_probs.mean(-1)
    mask = targets != PAD_ID
    return loss.masked_select(mask).sum() * scale, nll.masked_select(mask).sum()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_gradient_made_in_the_forward_pass_equals_autograds(label_smoothing, scale):
    torch.manual_seed(3)
    logits = (torch.randn(3, 7, 17, dtype=torch.float64) * 3).requires_grad_()
    targets = torch.randint(4, 17, (3, 7))
    targets[0, 5:] = PAD_ID
    targets[2, 1:] = PAD_ID
    with torch.no_grad():
        logits[2, 3] = 1e4  # garbage at a padded position
    loss, nll = sequence_loss(logits, targets, label_smoothing, scale)
    (grad,) = torch.autograd.grad(loss * 3.0, logits)  # an incoming gradient that is not 1
    ref_loss, ref_nll = _reference(logits, targets, label_smoothing, scale)
    (ref_grad,) = torch.autograd.grad(ref_loss * 3.0, logits)
    assert torch.allclose(loss, ref_loss, rtol=1e-12) and torch.allclose(nll, ref_nll, rtol=1e-12)
    assert torch.allclose(grad, ref_grad, rtol=1e-10, atol=1e-14)
    assert not grad[2, 1:].any() and not nll.requires_grad  # padding gets no gradient


def test_an_underflowed_target_probability_still_gives_the_exact_loss():
    """fp32 softmax probabilities below 1e-38 are 0: those rows take the NLL from the log-normalizer."""
    logits = torch.zeros(1, 3, 9)
    logits[0, 0, 5] = 200.0  # the target 4 of step 0 has probability exp(-200)
    logits[0, 2] = -1e4
    logits[0, 2, 4] = 0.0  # step 2: the target has probability 1 (NLL 0)
    targets = torch.tensor([[4, 4, 4]])
    loss, nll = sequence_loss(logits.requires_grad_(), targets, 0.1)
    ref_loss, ref_nll = _reference(logits, targets, 0.1, 1.0)
    assert torch.isfinite(loss) and abs(nll.item() - ref_nll.item()) < 1e-3 and abs(loss.item() - ref_loss) < 1e-3


def test_bf16_logits_get_a_bf16_gradient_computed_in_fp32():
    torch.manual_seed(4)
    logits = torch.randn(2, 5, 300).bfloat16().requires_grad_()
    targets = torch.randint(4, 300, (2, 5))
    targets[1, 3:] = PAD_ID
    loss, _ = sequence_loss(logits, targets, 0.1, 0.5)
    loss.backward()
    ref_loss, _ = _reference(logits.float(), targets, 0.1, 0.5)
    (ref_grad,) = torch.autograd.grad(ref_loss, logits)
    assert logits.grad.dtype == torch.bfloat16 and loss.dtype == torch.float32
    assert abs(loss.item() - ref_loss.item()) < 1e-4
    assert (logits.grad.float() - ref_grad.float()).abs().max() < 1e-3 * 0.5
