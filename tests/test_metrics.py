"""Foreground PSNR and coverage (graphnerf.render.metrics) against hand-computed values.

The point of ``psnr_fg``: a frame-wide PSNR flatters a small object on a white background, so a
blank frame or a silhouette filled with the object's mean colour must score low on it.
"""

from __future__ import annotations

import math

import pytest
import torch

from graphnerf.render import (
    bounding_sphere,
    coverage,
    eval_cameras,
    foreground_mask,
    framing_distance,
    psnr,
    psnr_fg,
)


def _scene(n: int = 20, lo: int = 7, hi: int = 13) -> tuple[torch.Tensor, torch.Tensor]:
    """A white ``n x n`` frame with a ``(hi - lo)^2`` object whose colour ramps 0.2 -> 0.7."""
    img = torch.ones(n, n, 3, dtype=torch.float64)
    op = torch.zeros(n, n, dtype=torch.float64)
    ramp = torch.linspace(0.2, 0.7, hi - lo, dtype=torch.float64)
    img[lo:hi, lo:hi] = ramp[:, None, None].expand(-1, hi - lo, 3)
    img[lo:hi, lo:hi, 1] = 0.5  # green flat, red / blue ramp with the row
    op[lo:hi, lo:hi] = 1.0
    return img, op


def test_psnr_fg_hand_computed_floater_and_error():
    target = torch.ones(2, 2, 3, dtype=torch.float64)
    target[0, 0] = 0.2
    op_t = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    pred = target.clone()
    pred[0, 0] = 0.3  # colour error 0.1 on the object
    pred[0, 1] = 0.5  # an opaque floater on the background
    op_p = torch.tensor([[1.0, 0.9], [0.4, 0.0]], dtype=torch.float64)  # 0.4: not foreground
    pred[1, 0] = 0.9  # ... so this faint error counts only in the frame-wide PSNR
    # foreground = pixels (0,0) and (0,1): mse = (0.1^2 + 0.5^2) / 2 = 0.13
    assert float(psnr_fg(pred, target, op_p, op_t)) == pytest.approx(10 * math.log10(1 / 0.13))
    # frame: (0.01 + 0.25 + 0.01) / 4
    assert float(psnr(pred, target)) == pytest.approx(10 * math.log10(4 / 0.27))
    mask = foreground_mask(op_p, op_t)
    assert mask.tolist() == [[True, True], [False, False]]


def test_blank_white_frame_scores_low_on_psnr_fg_but_high_on_psnr():
    target, op = _scene()
    blank = torch.ones_like(target)
    fg = float(psnr_fg(blank, target, torch.zeros_like(op), op))
    obj = target[7:13, 7:13]
    expected = 10 * math.log10(1 / float(((1 - obj) ** 2).mean()))
    assert fg == pytest.approx(expected)
    assert fg < 8.0
    assert float(psnr(blank, target)) > fg + 10.0  # the frame-wide PSNR flatters it


def test_mean_colour_silhouette_scores_its_colour_variance():
    target, op = _scene()
    obj = target[7:13, 7:13].reshape(-1, 3)
    flat = target.clone()
    flat[7:13, 7:13] = obj.mean(0)
    fg = float(psnr_fg(flat, target, op, op))
    var = float(obj.var(0, unbiased=False).mean())  # per-channel variance, channels averaged
    assert fg == pytest.approx(-10 * math.log10(var))
    assert fg < 20.0  # a silhouette alone does not pass the 25 dB goal
    assert float(psnr(flat, target)) > fg + 8.0


def test_psnr_fg_batch_empty_foreground_and_validation():
    target, op = _scene()
    pred = target.clone()
    pred[7:13, 7:13] += 0.1
    batch = psnr_fg(
        torch.stack([pred, target]),
        torch.stack([target, target]),
        op.expand(2, -1, -1),
        op[None].expand(2, -1, -1),
    )
    assert batch.shape == (2,)
    assert float(batch[0]) == pytest.approx(20.0)
    assert batch[1] == math.inf
    empty = torch.zeros_like(op)
    assert psnr_fg(target, target, empty, empty) == math.inf  # nothing to get wrong
    with pytest.raises(ValueError, match="opacity_pred"):
        psnr_fg(pred, target, op[:, :3], op)


def test_coverage_hand_computed():
    _, op = _scene()
    assert float(coverage(op)) == pytest.approx(36 / 400)
    half = torch.tensor([[[0.6, 0.5], [0.2, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert coverage(half).tolist() == [0.5, 0.0]  # 0.5 itself is not foreground
    with pytest.raises(ValueError, match="opacity"):
        coverage(torch.zeros(3))


def test_framing_distance_puts_the_sphere_outline_at_the_requested_share_of_the_view():
    # a sphere of radius 1 seen from distance d spans a half-angle asin(1 / d)
    d = framing_distance(1.0, fov_deg=50.0, fill=0.8)
    assert math.degrees(math.asin(1.0 / d)) == pytest.approx(0.8 * 25.0)
    centre, radius = bounding_sphere(torch.tensor([[0.0, 0, 0], [0.2, 0.4, 0.0]]))
    assert centre.tolist() == pytest.approx([0.1, 0.2, 0.0])
    assert radius == pytest.approx(math.hypot(0.1, 0.2))
    cams = eval_cameras(32, 32, center=centre, radius=radius)
    for cam in cams:
        dist = float(torch.linalg.vector_norm(cam.origin - centre))
        assert dist == pytest.approx(framing_distance(radius))
        # the camera looks at the centre: -z of the camera points at it
        forward = -cam.c2w[:3, 2]
        assert torch.allclose(forward, (centre - cam.origin) / dist, atol=1e-5)
