import math

import torch

from selm_bench.trainers.losses import dpo_loss, selm_loss


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_dpo_loss_hand_computed():
    # margin = (-1 - -2) - (-3 - -2.5) = 1 - (-0.5) = 1.5 ; beta 0.1 -> -log sigmoid(0.15)
    got = dpo_loss(t(-1.0), t(-3.0), t(-2.0), t(-2.5), beta=0.1)
    assert math.isclose(got.item(), -math.log(1 / (1 + math.exp(-0.15))), rel_tol=1e-12)
    # zero margin -> log 2
    assert math.isclose(dpo_loss(t(-1.0), t(-1.0), t(-1.0), t(-1.0), beta=0.5).item(), math.log(2), rel_tol=1e-12)


def test_selm_loss_hand_computed_and_shape():
    pc, pr, rc, rr = t(-1.0, -2.0), t(-3.0, -1.0), t(-2.0, -2.0), t(-2.5, -1.5)
    py, ry = t(-4.0, -0.5), t(-3.0, -1.0)
    got = selm_loss(pc, pr, rc, rr, py, ry, beta=0.1, alpha=0.5)
    assert got.shape == (2,)
    # example 0: dpo part as above, optimism = 0.5 * 0.1 * (-4 - -3) = -0.05
    expected0 = -math.log(1 / (1 + math.exp(-0.15))) - 0.05
    # example 1: margin = (0) - (0.5) = -0.5 ; optimism = 0.05 * 0.5 = 0.025
    expected1 = -math.log(1 / (1 + math.exp(0.05))) + 0.025
    assert torch.allclose(got, t(expected0, expected1), rtol=1e-12)


def test_alpha_zero_is_exactly_dpo():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(16, generator=g, dtype=torch.float64) * 5 for _ in range(6)]
    a = selm_loss(*args, beta=0.3, alpha=0.0)
    b = dpo_loss(*args[:4], beta=0.3)
    assert torch.equal(a, b)


def test_optimism_gradient_pushes_ref_response_logp_down():
    py = torch.tensor([-2.0, -5.0], dtype=torch.float64, requires_grad=True)
    loss = selm_loss(t(-1.0, -1.0), t(-2.0, -2.0), t(-1.0, -1.0), t(-2.0, -2.0), py, t(-2.0, -5.0), beta=0.1, alpha=1.0)
    loss.sum().backward()
    # d loss / d log pi(y_ref) = alpha * beta > 0, so gradient descent lowers log pi(y_ref)
    assert torch.allclose(py.grad, torch.full_like(py, 0.1))
    stepped = py.detach() - 1.0 * py.grad
    assert (stepped < py.detach()).all()


def test_dpo_gradient_signs():
    pc = torch.tensor([-1.0], requires_grad=True)
    pr = torch.tensor([-1.0], requires_grad=True)
    dpo_loss(pc, pr, torch.tensor([-1.0]), torch.tensor([-1.0]), beta=1.0).sum().backward()
    assert pc.grad.item() < 0 < pr.grad.item()  # descent raises chosen, lowers rejected
