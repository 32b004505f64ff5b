"""Preference losses as pure functions of sequence log-probabilities.

Each log-prob argument is a 1-D tensor of shape (B,): the sum of the response tokens'
log-probabilities given the prompt. Both functions return per-example losses (B,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Sigmoid DPO: -log σ(β·[(π_w − ref_w) − (π_l − ref_l)])."""
    margin = (policy_chosen_logps - reference_chosen_logps) - (policy_rejected_logps - reference_rejected_logps)
    return -F.logsigmoid(beta * margin)


def selm_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    policy_ref_response_logps: torch.Tensor,
    reference_ref_response_logps: torch.Tensor,
    beta: float,
    alpha: float,
) -> torch.Tensor:
    """SELM (Zhang et al. 2024): DPO plus the optimism term α·β·(log π(y_ref) − log π_ref(y_ref)).

    y_ref is the reference policy's own response. Minimising the extra term lowers the
    implicit reward of what the reference already says, pushing mass toward unexplored
    responses with high potential reward. α = 0 is exactly DPO.
    """
    optimism = alpha * beta * (policy_ref_response_logps - reference_ref_response_logps)
    return dpo_loss(
        policy_chosen_logps, policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, beta
    ) + optimism
