"""Normalised mean error (NME) of face landmarks, overall and per WFLW attribute subset.

NME of one face = mean over its K points of ||prediction - target||, divided by the
outer-eye-corner distance ||target[60] - target[72]|| (WFLW's 98-point layout, "inter-ocular"
normalisation as in Table 3 of the paper and mmpose). Reported in percent.

The state holds sums and counts only (overall and per subset), so it is additive across
batches and processes. A subset with no face in the evaluated set is left out of the result.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from ..data.wflw import ATTRIBUTE_NAMES as WFLW_ATTRIBUTES  # the six flags, in annotation-file order
from ..errors import InputError
from .base import Metric

#: The order Table 3 reports the subsets in.
WFLW_SUBSETS: tuple[str, ...] = ("pose", "illumination", "occlusion", "blur", "makeup", "expression")
#: the NME normaliser: WFLW points 60 and 72, the outer corners of the two eyes (mmpose's `wflw` indices)
WFLW_OUTER_EYE_CORNERS: tuple[int, int] = (60, 72)


def nme_per_sample(
    prediction: torch.Tensor, target: torch.Tensor, eye_corners: tuple[int, int] = WFLW_OUTER_EYE_CORNERS
) -> torch.Tensor:
    """NME of each face (a fraction, not percent): prediction, target `[B, K, 2]` -> `[B]`."""
    if prediction.shape != target.shape or prediction.ndim != 3 or prediction.shape[-1] != 2:
        raise InputError(
            f"NME needs prediction and target of the same shape [B, K, 2]; got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}"
        )
    left, right = eye_corners
    if max(left, right) >= target.shape[1]:
        raise InputError(f"eye-corner indices {eye_corners} need at least {max(eye_corners) + 1} points")
    prediction, target = prediction.to(torch.float64), target.to(torch.float64)
    normaliser = (target[:, left] - target[:, right]).norm(dim=-1)
    if bool((normaliser <= 0).any()):
        raise InputError("a target face has coincident outer eye corners: its NME is undefined")
    return (prediction - target).norm(dim=-1).mean(dim=-1) / normaliser


class NMEMetric(Metric):
    """NME (percent) on the whole set and on each attribute subset.

    State layout (float64): `[sum, count, sum_<attr0>, count_<attr0>, ...]` for the attributes
    in `attribute_names` order (the order of `batch["attributes"]` columns).
    """

    def __init__(
        self,
        attribute_names: Sequence[str] = WFLW_ATTRIBUTES,
        eye_corners: tuple[int, int] = WFLW_OUTER_EYE_CORNERS,
    ) -> None:
        self.attribute_names = tuple(attribute_names)
        self.eye_corners = eye_corners
        self._state = torch.zeros(2 + 2 * len(self.attribute_names), dtype=torch.float64)

    def update(self, prediction: torch.Tensor, batch: Mapping[str, Any]) -> None:
        """prediction: points `[B, K, 2]`; batch["points"] `[B, K, 2]`, optional batch["attributes"] `[B, A]`."""
        errors = nme_per_sample(prediction.detach().cpu(), batch["points"].detach().cpu(), self.eye_corners)
        self._state[0] += errors.sum()
        self._state[1] += errors.numel()
        attributes = batch.get("attributes")
        if attributes is None or not self.attribute_names:
            return
        flags = attributes.detach().cpu().to(torch.float64).reshape(len(errors), -1) > 0
        for i in range(len(self.attribute_names)):
            self._state[2 + 2 * i] += errors[flags[:, i]].sum()
            self._state[3 + 2 * i] += flags[:, i].sum()

    def state(self) -> torch.Tensor:
        return self._state.clone()

    def compute(self, state: torch.Tensor) -> dict[str, float]:
        """{"NME": ..., "NME_pose": ..., ...} in percent; empty subsets are left out."""
        state = state.to(torch.float64).cpu()
        scores: dict[str, float] = {}
        if state[1] > 0:
            scores["NME"] = 100.0 * float(state[0] / state[1])
        by_name = {
            name: (state[2 + 2 * i], state[3 + 2 * i]) for i, name in enumerate(self.attribute_names)
        }
        for name in [n for n in WFLW_SUBSETS if n in by_name] + [n for n in by_name if n not in WFLW_SUBSETS]:
            total, count = by_name[name]
            if count > 0:
                scores[f"NME_{name}"] = 100.0 * float(total / count)
        return scores
