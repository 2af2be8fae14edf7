import numpy as np
import pytest
import torch

from napari_sparseseg.core.loss import class_weights, masked_cross_entropy, sparse_loss


def _batch(seed=0, classes=3, shape=(2, 4, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape[0], classes, *shape[1:], generator=g, requires_grad=True)
    target = torch.randint(-1, classes, shape, generator=g)
    return logits, target


def test_unlabeled_voxels_do_not_change_the_loss():
    logits, target = _batch()
    before = sparse_loss(logits, target, dice_weight=0.5)
    changed = logits.detach().clone()
    changed[:, :][(target == -1).unsqueeze(1).expand_as(changed)] += 100.0
    after = sparse_loss(changed, target, dice_weight=0.5)
    assert torch.allclose(before, after, atol=1e-5)


def test_unlabeled_voxels_get_no_gradient():
    logits, target = _batch()
    sparse_loss(logits, target, dice_weight=0.3).backward()
    grad = logits.grad.abs().sum(dim=1)
    assert torch.all(grad[target == -1] == 0)
    assert torch.all(grad[target >= 0] > 0)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_patch_without_paint_gives_zero_not_nan(alpha):
    logits, _ = _batch()
    target = torch.full((2, 4, 5, 6), -1)
    loss = sparse_loss(logits, target, torch.ones(3), dice_weight=alpha)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_ce_equals_torch_mean_on_painted_voxels():
    logits, target = _batch(seed=1)
    painted = target >= 0
    flat_logits = logits.movedim(1, -1)[painted]
    expected = torch.nn.functional.cross_entropy(flat_logits, target[painted])
    assert torch.allclose(masked_cross_entropy(logits, target), expected, atol=1e-6)


def test_dice_weight_mixes_terms():
    logits, target = _batch(seed=2)
    ce = sparse_loss(logits, target, dice_weight=0.0)
    dice = sparse_loss(logits, target, dice_weight=1.0)
    mixed = sparse_loss(logits, target, dice_weight=0.25)
    assert torch.allclose(mixed, 0.25 * dice + 0.75 * ce, atol=1e-6)


def test_class_weights_balance_painted_classes():
    ann = np.zeros((4, 10, 10), np.uint8)
    ann[0] = 1  # 100 background
    ann[1, :2, :5] = 2  # 10 of class 1
    w = class_weights([ann], n_classes=3)
    assert w[1] == pytest.approx(10 * w[0])  # rare class weighted up in proportion
    assert w[2] == 0  # not painted: no weight
    assert (w[:2] * [100, 10]).sum() == pytest.approx(110)  # mean weight 1 per painted voxel
