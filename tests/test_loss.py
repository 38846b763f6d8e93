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
