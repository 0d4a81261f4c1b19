"""Tests for graphnerf.losses: each loss against a hand computation, symmetries, edge cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from graphnerf.losses import (
    NTXentLoss,
    SigLIPLoss,
    latent_l2_loss,
    ntxent_loss,
    quaternion_angle,
    quaternion_geodesic_loss,
    siglip_loss,
)
from graphnerf.losses.rotation import quaternion_angle_deg

D64 = torch.float64


def t64(x) -> torch.Tensor:
    return torch.tensor(x, dtype=D64)


def softplus(x: float) -> float:
    """-log sigmoid(-x) = log(1 + e^x), plain math."""
    return math.log1p(math.exp(x))


# ---------------------------------------------------------------- SigLIP


# u (2 rows) and v (3 rows) in 2D, deliberately not unit length; after normalisation:
# u1 = (1, 0), u2 = (0, 1); v1 = (0.6, 0.8), v2 = (-1, 0), v3 = (0, 1).
SIG_U = [[2.0, 0.0], [0.0, 3.0]]
SIG_V = [[3.0, 4.0], [-1.0, 0.0], [0.0, 0.5]]
SIG_LU = [0, 1]
SIG_LV = [0, 1, 1]  # object 1 has two views in v: two positives for u2
SIG_DOTS = [[0.6, -1.0, 0.0], [0.8, 0.0, 1.0]]  # <u_j, v_k>, by hand
SIG_LABEL = [[1, -1, -1], [-1, 1, 1]]  # l_jk, by hand


def siglip_by_hand(t: float, b: float) -> float:
    total = 0.0
    for j in range(2):
        for k in range(3):
            logit = math.exp(t) * SIG_DOTS[j][k] + b
            total += softplus(-SIG_LABEL[j][k] * logit)  # -log sigmoid(l * logit)
    return total / 2  # divided by |B| = rows of u, not by the 6 pairs


@pytest.mark.parametrize("t,b", [(math.log(2.0), -1.0), (math.log(10.0), -10.0), (0.3, 0.7)])
def test_siglip_matches_hand_computation(t, b):
    got = siglip_loss(
        t64(SIG_U), t64(SIG_V), torch.tensor(SIG_LU), torch.tensor(SIG_LV), t64(t), t64(b)
    )
    assert got.item() == pytest.approx(siglip_by_hand(t, b), abs=1e-6, rel=1e-9)


def test_siglip_module_init_and_gradients_flow_to_t_and_b():
    loss_fn = SigLIPLoss().double()
    assert loss_fn.t.item() == pytest.approx(math.log(10.0))
    assert loss_fn.b.item() == pytest.approx(-10.0)
    loss = loss_fn(t64(SIG_U), t64(SIG_V), torch.tensor(SIG_LU), torch.tensor(SIG_LV))
    assert loss.item() == pytest.approx(siglip_by_hand(math.log(10.0), -10.0), abs=1e-6)
    loss.backward()
    # d loss / d b = -(1/|B|) sum_jk l_jk sigmoid(-l_jk logit_jk), by hand
    expected_db = 0.0
    for j in range(2):
        for k in range(3):
            logit = 10.0 * SIG_DOTS[j][k] - 10.0
            lab = SIG_LABEL[j][k]
            expected_db -= lab / (1.0 + math.exp(lab * logit)) / 2
    assert loss_fn.b.grad.item() == pytest.approx(expected_db, abs=1e-6)
    assert torch.isfinite(loss_fn.t.grad) and loss_fn.t.grad.abs() > 1e-6


def test_siglip_symmetric_and_permutation_invariant():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(5, 8, generator=g, dtype=D64), torch.randn(5, 8, generator=g, dtype=D64)
    lu, lv = torch.tensor([0, 1, 2, 3, 1]), torch.tensor([1, 0, 3, 2, 4])
    t, b = t64(0.5), t64(-2.0)
    ref = siglip_loss(u, v, lu, lv, t, b)
    assert siglip_loss(v, u, lv, lu, t, b).item() == pytest.approx(ref.item(), rel=1e-12)
    pu, pv = torch.randperm(5, generator=g), torch.randperm(5, generator=g)
    permuted = siglip_loss(u[pu], v[pv], lu[pu], lv[pv], t, b)
    assert permuted.item() == pytest.approx(ref.item(), rel=1e-12)


def test_siglip_aligned_orthogonal_pairs_are_minimal():
    b_, d = 4, 8
    aligned = torch.eye(b_, d, dtype=D64)  # u_i = v_i, negatives orthogonal
    labels = torch.arange(b_)
    loss_fn = SigLIPLoss().double()
    with torch.no_grad():
        best = loss_fn(aligned, aligned, labels, labels)
        g = torch.Generator().manual_seed(1)
        for _ in range(20):
            u = aligned + 0.1 * torch.randn(b_, d, generator=g, dtype=D64)
            v = aligned + 0.1 * torch.randn(b_, d, generator=g, dtype=D64)
            assert loss_fn(u, v, labels, labels) > best


def test_siglip_short_final_batch():
    loss_fn = SigLIPLoss()
    u, v = torch.randn(1, 16), torch.randn(3, 16)
    loss = loss_fn(u, v, torch.tensor([2]), torch.tensor([2, 5, 7]))
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(loss_fn.t.grad) and torch.isfinite(loss_fn.b.grad)
    single = loss_fn(u, u, torch.tensor([0]), torch.tensor([0]))
    assert torch.isfinite(single)


def test_siglip_rejects_bad_shapes():
    with pytest.raises(ValueError, match="embedding size"):
        siglip_loss(
            torch.randn(2, 3), torch.randn(2, 4), torch.arange(2), torch.arange(2), 0.0, 0.0
        )
    with pytest.raises(ValueError, match="labels"):
        siglip_loss(
            torch.randn(2, 3), torch.randn(2, 3), torch.arange(3), torch.arange(2), 0.0, 0.0
        )


# ---------------------------------------------------------------- NT-Xent


def test_ntxent_three_views_of_one_object_by_hand():
    # z0..z2: three views of object 0, z3: object 1 (no positive: excluded as anchor).
    z = t64([[1.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [3.0, 4.0]])
    labels = torch.tensor([0, 0, 0, 1])
    cos = [  # by hand, after normalisation (z3 -> (0.6, 0.8))
        [1.0, 0.0, -1.0, 0.6],
        [0.0, 1.0, 0.0, 0.8],
        [-1.0, 0.0, 1.0, -0.6],
        [0.6, 0.8, -0.6, 1.0],
    ]
    tau = 0.5
    per_anchor = []
    for i in range(3):
        log_denom = math.log(sum(math.exp(cos[i][a] / tau) for a in range(4) if a != i))
        positives = [p for p in range(3) if p != i]
        per_anchor.append(-sum(cos[i][p] / tau - log_denom for p in positives) / len(positives))
    expected = sum(per_anchor) / 3
    assert ntxent_loss(z, labels, tau=tau).item() == pytest.approx(expected, abs=1e-6, rel=1e-9)
    assert NTXentLoss(tau=tau)(z, labels).item() == pytest.approx(expected, abs=1e-6, rel=1e-9)


def simclr_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR NT-Xent: 2B-way classification of each view's partner, self excluded."""
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / tau
    sim = sim - torch.diag(torch.full((2 * n,), 1e9, dtype=sim.dtype))  # drop self-similarity
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_ntxent_two_view_case_equals_simclr(tau):
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(6, 5, generator=g, dtype=D64), torch.randn(6, 5, generator=g, dtype=D64)
    ids = torch.arange(6) * 7  # object ids need not be 0..B-1
    got = ntxent_loss(torch.cat([z1, z2]), torch.cat([ids, ids]), tau=tau)
    assert got.item() == pytest.approx(simclr_reference(z1, z2, tau).item(), abs=1e-9)


def test_ntxent_permutation_invariant():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 4, generator=g, dtype=D64)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 3])
    perm = torch.randperm(7, generator=g)
    ref = ntxent_loss(z, labels)
    assert ntxent_loss(z[perm], labels[perm]).item() == pytest.approx(ref.item(), rel=1e-12)


def test_ntxent_decreases_as_positives_align():
    # z1_i = e_i, z2_i = cos(a) e_i + sin(a) e_{B+i}: all negatives stay orthogonal, only the
    # positive similarity cos(a) changes.
    b_ = 4
    e = torch.eye(2 * b_, dtype=D64)
    labels = torch.cat([torch.arange(b_), torch.arange(b_)])
    losses = []
    for a in [1.5, 1.0, 0.5, 0.2, 0.0]:
        z2 = math.cos(a) * e[:b_] + math.sin(a) * e[b_:]
        losses.append(ntxent_loss(torch.cat([e[:b_], z2]), labels).item())
    assert all(x > y for x, y in zip(losses, losses[1:], strict=False)), losses


def test_ntxent_short_batch_and_lone_anchors_have_finite_gradients():
    z = torch.randn(3, 4, requires_grad=True)
    loss = ntxent_loss(z, torch.tensor([5, 5, 9]))  # the lone view of object 9 is only a negative
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    pair = torch.randn(2, 4, requires_grad=True)
    loss = ntxent_loss(pair, torch.tensor([0, 0]))  # a single object: no negatives, loss 0
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and torch.isfinite(pair.grad).all()


def test_ntxent_without_positives_returns_connected_zero_and_warns():
    z = torch.randn(3, 4, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="positive"):
        loss = ntxent_loss(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_ntxent_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        NTXentLoss(tau=0.0)


# ---------------------------------------------------------------- quaternions (wxyz)

IDENTITY = [1.0, 0.0, 0.0, 0.0]


def random_unit_quaternions(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, 4, generator=g, dtype=D64), dim=1)


def test_quaternion_loss_zero_for_same_rotation_and_its_negation():
    q = random_unit_quaternions(8, 4)
    assert quaternion_geodesic_loss(q, q).item() == pytest.approx(0.0, abs=1e-12)
    assert quaternion_geodesic_loss(-q, q).item() == pytest.approx(0.0, abs=1e-12)


def test_quaternion_loss_known_angles():
    s = math.sqrt(0.5)
    q_true = t64([IDENTITY, IDENTITY, IDENTITY, IDENTITY])
    q_pred = t64(
        [
            [0.0, 1.0, 0.0, 0.0],  # 180 degrees about x
            [s, 0.0, s, 0.0],  # 90 degrees about y
            [-s, 0.0, 0.0, s],  # 90 degrees about z (negated representation)
            [math.cos(0.5), 0.0, 0.0, math.sin(0.5)],  # 1 radian about z
        ]
    )
    loss = quaternion_geodesic_loss(q_pred, q_true, reduction="none")
    expected = [math.pi**2, (math.pi / 2) ** 2, (math.pi / 2) ** 2, 1.0]
    assert loss.tolist() == pytest.approx(expected, abs=1e-6)
    assert quaternion_geodesic_loss(q_pred, q_true).item() == pytest.approx(
        sum(expected) / 4, abs=1e-6
    )
    assert quaternion_geodesic_loss(q_pred, q_true, reduction="sum").item() == pytest.approx(
        sum(expected), abs=1e-6
    )
    assert quaternion_angle_deg(q_pred, q_true).tolist() == pytest.approx(
        [180.0, 90.0, 90.0, math.degrees(1.0)], abs=1e-6
    )


def test_quaternion_angle_matches_acos_formula():
    q1, q2 = random_unit_quaternions(16, 5), random_unit_quaternions(16, 6)
    expected = [
        2 * math.acos(abs(sum(a * b for a, b in zip(r1, r2, strict=True))))
        for r1, r2 in zip(q1.tolist(), q2.tolist(), strict=True)
    ]
    assert quaternion_angle(q1, q2).tolist() == pytest.approx(expected, abs=1e-6)
    assert quaternion_angle(q2, q1).tolist() == pytest.approx(expected, abs=1e-6)


def test_quaternion_loss_scale_invariant_in_prediction():
    q_true, q_pred = random_unit_quaternions(8, 7), random_unit_quaternions(8, 8)
    ref = quaternion_geodesic_loss(q_pred, q_true, reduction="none")
    for scale in [1e-3, 0.5, 7.0, -3.0, 1e4]:
        scaled = quaternion_geodesic_loss(scale * q_pred, q_true, reduction="none")
        assert torch.allclose(scaled, ref, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_quaternion_loss_gradient_finite_at_identity_and_antipode(dtype):
    for q_true in [torch.tensor([IDENTITY], dtype=dtype), random_unit_quaternions(4, 9).to(dtype)]:
        for sign in [1.0, -1.0]:
            q_pred = (sign * q_true).clone().requires_grad_(True)
            loss = quaternion_geodesic_loss(q_pred, q_true)
            loss.backward()
            assert torch.isfinite(q_pred.grad).all(), (sign, q_pred.grad)
            assert q_pred.grad.abs().max() < 1e-3  # minimum of a smooth function


def test_quaternion_loss_gradient_points_towards_target():
    q_true = t64([IDENTITY])
    q_pred = t64([[math.cos(0.3), math.sin(0.3), 0.0, 0.0]]).requires_grad_(True)
    quaternion_geodesic_loss(q_pred, q_true).backward()
    stepped = q_pred.detach() - 0.01 * q_pred.grad
    assert quaternion_angle(stepped, q_true) < quaternion_angle(q_pred.detach(), q_true)


def test_quaternion_zero_prediction_is_maximal_error_not_nan():
    q_pred = torch.zeros(1, 4, requires_grad=True)
    loss = quaternion_geodesic_loss(q_pred, torch.tensor([IDENTITY]))
    loss.backward()
    assert loss.item() == pytest.approx(math.pi**2, abs=1e-5)
    assert torch.isfinite(q_pred.grad).all()


def test_quaternion_rejects_bad_input():
    with pytest.raises(ValueError, match="wxyz"):
        quaternion_geodesic_loss(torch.randn(2, 3), torch.randn(2, 3))
    with pytest.raises(ValueError, match="reduction"):
        quaternion_geodesic_loss(torch.randn(2, 4), torch.randn(2, 4), reduction="avg")


# ---------------------------------------------------------------- latent L2


def test_latent_l2_by_hand():
    z_a, z_b = t64([[1.0, 2.0], [0.0, 0.0]]), t64([[0.0, 0.0], [3.0, 4.0]])
    assert latent_l2_loss(z_a, z_b, reduction="none").tolist() == [5.0, 25.0]
    assert latent_l2_loss(z_a, z_b).item() == 15.0
    assert latent_l2_loss(z_a, z_b, reduction="sum").item() == 30.0
    assert latent_l2_loss(z_a).item() == 2.5  # regulariser ||z||^2: (5 + 0) / 2


def test_latent_l2_sums_over_all_feature_dims_of_a_latent_matrix():
    z_a = torch.ones(2, 3, 4)
    z_b = torch.zeros(2, 3, 4)
    assert latent_l2_loss(z_a, z_b, reduction="none").tolist() == [12.0, 12.0]
    with pytest.raises(ValueError, match="same shape"):
        latent_l2_loss(z_a, torch.zeros(2, 12))
