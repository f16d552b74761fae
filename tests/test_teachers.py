"""The teacher-side building blocks of PLC-KD and ensemble KD (``kdbench.teachers``).

FIG, BT and SC are checked for the properties issue 9 asks for; the ensemble average
and both students' losses against independent loop formulas in float64 (rel. 1e-5).
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from kdbench.teachers import (
    BTTransform, EnsembleTeacher, FIGTransform, PixelQueues, assistant_correct, boundary_band,
    bt_images, ensemble_loss, fig_images, mean_probabilities, plckd_kl, similarity_correct,
    team_soft_labels)

D = torch.float64
REL = 1e-5


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def rows(t):
    """The rows of an ``(n, C)`` tensor of pixel vectors as a set of tuples."""
    return {tuple(r) for r in t.tolist()}


def pixels(image):
    """The ``(positions, C)`` pixel vectors of a ``(C, *spatial)`` image."""
    return image.flatten(1).T


def disc(size, centre, radius):
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) <= radius ** 2


# ---------------------------------------------------------------- FIG


def test_push_takes_k_false_pixels_per_image_and_queue():
    B, C, S = 2, 2, 8
    image = torch.arange(B * C * S * S, dtype=torch.float32).view(B, C, S, S)  # every pixel distinct
    label = torch.zeros(B, S, S, dtype=torch.long)
    label[:, 2:6, 2:6] = 1
    pred = torch.zeros_like(label)
    pred[:, 3:7, 3:7] = 1
    pred[1] = 0  # image 1: no false positives, 16 false negatives
    queues = PixelQueues(length=100)
    queues.push(image, pred, label, k=5, generator=gen())
    fn_true = [rows(image[b, :, (label[b] == 1) & (pred[b] == 0)].T) for b in range(B)]
    fp_true = [rows(image[b, :, (pred[b] == 1) & (label[b] == 0)].T) for b in range(B)]
    assert len(queues.fn) == 5 + 5 and len(queues.fp) == 5 + 0
    assert rows(queues.fn[:5]) <= fn_true[0] and rows(queues.fn[5:]) <= fn_true[1]
    assert rows(queues.fp) <= fp_true[0]
    assert len(rows(queues.fn)) == 10  # without replacement


def test_push_is_fifo():
    image = torch.randn(3, 1, 8, 8, generator=gen(1))
    label = torch.ones(3, 8, 8, dtype=torch.long)
    pred = torch.zeros_like(label)
    pred[:, :, :4] = 1  # half false negatives; no false positives
    big, small = PixelQueues(length=1000), PixelQueues(length=7)
    for q in (big, small):
        g = gen(2)
        q.push(image, pred, label, 4, g)
        q.push(image + 100, pred, label, 4, g)
    assert len(big.fn) == 24 and small.full is False and len(small.fn) == 7
    assert torch.equal(small.fn, big.fn[-7:])


def fig_queues(channels=2):
    q = PixelQueues(length=50)
    q.fn = 100 + torch.arange(50 * channels, dtype=torch.float32).view(50, channels)  # all in [100, 200)
    q.fp = -200 + torch.arange(30 * channels, dtype=torch.float32).view(30, channels)  # all in [-200, -140)
    return q


def test_fig_image_fills_a_real_mask_from_the_queues():
    S = 12
    labels = torch.zeros(4, S, S, dtype=torch.long)
    labels[0][disc(S, (4, 4), 3)] = 1
    labels[1][disc(S, (7, 6), 4)] = 1
    labels[3, 1:4, 8:11] = 2  # a second class; image 2 has no lesion and must never be chosen
    queues = fig_queues()
    images, masks = fig_images(labels, queues, gen(3))
    assert images.shape == (4, 2, S, S) and masks.shape == labels.shape
    fn, fp = rows(queues.fn), rows(queues.fp)
    chosen = []
    for image, mask in zip(images, masks):
        matches = [j for j in range(4) if torch.equal(mask, labels[j])]
        assert matches and matches[0] != 2
        chosen.append(matches[0])
        assert rows(image[:, mask != 0].T) <= fn
        assert rows(image[:, mask == 0].T) <= fp
    assert len(set(chosen)) > 1  # a random choice, not always the same mask


def test_fig_images_without_any_lesion_keep_their_labels_as_background():
    labels = torch.zeros(2, 5, 5, dtype=torch.long)
    queues = fig_queues(channels=1)
    images, masks = fig_images(labels, queues, gen())
    assert torch.equal(masks, labels)
    assert rows(pixels(images[0])) <= rows(queues.fp) and rows(pixels(images[1])) <= rows(queues.fp)
    with pytest.raises(ValueError):
        fig_images(labels, PixelQueues(), gen())


class Threshold(nn.Module):
    """Predicts foreground where the image exceeds 0.5; records its mode when called."""

    def forward(self, x):
        self.seen_training = self.training
        return torch.cat([0.5 - x, x - 0.5], dim=1)


def test_fig_transform_fills_the_queues_first_then_alternates():
    S = 8
    image = torch.rand(2, 1, S, S, generator=gen(4))
    label = (torch.rand(2, S, S, generator=gen(5)) > 0.5).long()
    teacher = Threshold().train()
    transform = FIGTransform(teacher, length=40, k=8)
    out = transform(image, label, gen())
    assert out[0] is image and out[1] is label and not transform.last_synthetic
    assert teacher.training and not teacher.seen_training  # ran in eval mode, mode restored
    for _ in range(3):
        out = transform(image, label, gen())
    assert transform.queues.full and transform.last_synthetic
    assert rows(out[0][0, :, out[1][0] != 0].T) <= rows(transform.queues.fn)
    eager = FIGTransform(teacher, length=40, k=8, fill_first=False)
    assert eager(image, label, gen())[0] is not image and eager.last_synthetic


def test_fig_transform_returns_the_real_batch_while_a_queue_is_empty():
    image = torch.zeros(1, 1, 6, 6)
    label = torch.zeros(1, 6, 6, dtype=torch.long)
    label[0, 2:4, 2:4] = 1
    transform = FIGTransform(Threshold(), length=4, k=2, fill_first=False)  # predicts nothing: no FP
    out = transform(image, label, gen())
    assert out[0] is image and not transform.last_synthetic
    assert len(transform.queues.fn) == 2 and len(transform.queues.fp) == 0


# ---------------------------------------------------------------- BT


@pytest.mark.parametrize("dims,delta", [(2, 1), (2, 2), (3, 1), (3, 2)])
def test_band_is_mask_minus_its_erosion(dims, delta):
    rng = np.random.default_rng(dims * 10 + delta)
    shape = (2,) + (9,) * dims
    mask = ndimage.binary_opening(rng.random(shape) > 0.35, structure=np.ones((1,) + (2,) * dims))
    mask[:, (0,) * dims] = True  # a lesion touching the frame
    band = boundary_band(torch.from_numpy(mask), delta).numpy()
    for b in range(2):
        eroded = ndimage.binary_erosion(mask[b], np.ones((3,) * dims), iterations=delta, border_value=1)
        np.testing.assert_array_equal(band[b], mask[b] & ~eroded)


def check_bt(images, labels, out, delta, fraction=1.0):
    """Pixels outside the lesion unchanged; n band and n interior pixels exchange values."""
    lesion = labels != 0
    band = boundary_band(lesion, delta)
    interior = lesion & ~band
    for b in range(len(images)):
        x, y = pixels(images[b]), pixels(out[b])
        bd, inner, outside = band[b].flatten(), interior[b].flatten(), ~lesion[b].flatten()
        assert torch.equal(x[outside], y[outside])
        assert rows(x) == rows(y) and len(rows(y)) == len(x)  # multiset of pixel vectors kept
        moved = (x != y).any(1)
        n = int(fraction * min(int(bd.sum()), int(inner.sum())))
        assert int((moved & bd).sum()) == n and int((moved & inner).sum()) == n
        assert rows(y[moved & bd]) == rows(x[moved & inner])
        assert rows(y[moved & inner]) == rows(x[moved & bd])


def distinct(*shape, seed=0):
    n = math.prod(shape)
    return torch.randperm(n, generator=gen(seed)).view(*shape).to(D)


def test_bt_swaps_band_and_interior_2d():
    S = 20
    labels = torch.zeros(2, S, S, dtype=torch.long)
    labels[0][disc(S, (9, 9), 7)] = 1
    labels[1][disc(S, (6, 12), 5)] = 2
    labels[1, 0:3, 0:3] = 1  # too small for an interior: nothing to swap there
    images = distinct(2, 2, S, S)
    out = bt_images(images, labels, 2, gen())
    check_bt(images, labels, out, 2)
    assert not torch.equal(out, images)
    half = bt_images(images, labels, 2, gen(), fraction=0.5)
    check_bt(images, labels, half, 2, fraction=0.5)
    image, label = BTTransform(delta=2)(images, labels, gen())
    assert label is labels and torch.equal(image, out)


def test_bt_swaps_band_and_interior_3d():
    size = 10
    zz, yy, xx = torch.meshgrid(*(torch.arange(size),) * 3, indexing="ij")
    labels = (((zz - 5) ** 2 + (yy - 4) ** 2 + (xx - 5) ** 2) <= 16).long()[None]
    images = distinct(1, 1, size, size, size, seed=1)
    out = bt_images(images, labels, 1, gen())
    check_bt(images, labels, out, 1)
    assert not torch.equal(out, images)


# ---------------------------------------------------------------- SC and the team


def team_inputs(seed=0, B=2, K=3, S=10):
    g = gen(seed)
    probs = torch.softmax(torch.randn(B, K, S, S, generator=g, dtype=D) * 2, dim=1)
    label = torch.randint(0, K, (B, S, S), generator=g)
    features = torch.randn(B, 4, S // 2, S // 2, generator=g, dtype=D)
    return probs, features, label


def brute_force_sc(probs, features, label):
    """Every wrong pixel copies the most cosine-similar correct pixel of its label's class."""
    f = F.interpolate(features, size=probs.shape[2:], mode="bilinear", align_corners=False)
    out = probs.clone()
    pred = probs.argmax(1)
    for b in range(probs.shape[0]):
        pixels = [(i, j) for i in range(probs.shape[2]) for j in range(probs.shape[3])]
        for i, j in pixels:
            c = int(label[b, i, j])
            if int(pred[b, i, j]) == c:
                continue
            best, best_sim = None, -math.inf
            for u, v in pixels:
                if int(pred[b, u, v]) == c and int(label[b, u, v]) == c:
                    sim = float(F.cosine_similarity(f[b, :, i, j], f[b, :, u, v], dim=0, eps=1e-12))
                    if sim > best_sim:
                        best, best_sim = (u, v), sim
            if best is not None:
                out[b, :, i, j] = probs[b, :, best[0], best[1]]
    return out


def test_sc_makes_every_pixel_agree_and_leaves_correct_pixels_untouched():
    probs, features, label = team_inputs()
    out = similarity_correct(probs, features, label)
    assert torch.equal(out.argmax(1), label)
    correct = probs.argmax(1) == label
    assert (~correct).any()
    assert torch.equal(out.movedim(1, -1)[correct], probs.movedim(1, -1)[correct])  # bitwise
    torch.testing.assert_close(out, brute_force_sc(probs, features, label), rtol=0, atol=0)
    assert torch.equal(similarity_correct(probs, features, label, max_elements=5), out)  # blocks


def test_sc_fallback_without_a_correct_pixel_of_the_class():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.5, 0.5, 0.0], [0.1, 0.8, 0.1]], dtype=D)
    probs = probs.T.reshape(1, 3, 2, 2)
    label = torch.tensor([[[2, 2], [1, 1]]])  # class 2 is never predicted; pixel 2 ties 0 and 1
    out = similarity_correct(probs, torch.randn(1, 2, 2, 2, dtype=D), label)
    assert torch.equal(out.argmax(1), label)
    flat = out.reshape(3, 4).T
    torch.testing.assert_close(flat[0], torch.tensor([0.1, 0.2, 0.7], dtype=D))  # top and label exchanged
    torch.testing.assert_close(flat[1], torch.tensor([0.3, 0.1, 0.6], dtype=D))
    torch.testing.assert_close(flat[2], torch.tensor([0.1, 0.8, 0.1], dtype=D))  # copied from pixel 3
    assert torch.equal(flat[3], probs.reshape(3, 4).T[3])


def test_sc_leaves_ignored_pixels_alone():
    probs, features, label = team_inputs(seed=1)
    label[0, :3] = 255
    out = similarity_correct(probs, features, label, ignore_index=255)
    ignored = label == 255
    assert torch.equal(out.movedim(1, -1)[ignored], probs.movedim(1, -1)[ignored])
    assert torch.equal(out.argmax(1)[~ignored], label[~ignored])


def test_assistant_correct_changes_only_wrong_pixels():
    probs, _, label = team_inputs(seed=2)
    assistant, _, _ = team_inputs(seed=3)
    out = assistant_correct(probs, assistant, label)
    wrong = probs.argmax(1) != label
    assert torch.equal(out.movedim(1, -1)[~wrong], probs.movedim(1, -1)[~wrong])
    assert torch.equal(out.movedim(1, -1)[wrong], assistant.movedim(1, -1)[wrong])


def test_team_soft_labels_parts_switch():
    probs, features, label = team_inputs(seed=4)
    ta_f, ta_b = team_inputs(seed=5)[0], team_inputs(seed=6)[0]
    team = team_soft_labels(probs, features, label, ta_f, ta_b)
    assert torch.equal(team.false_pixel, assistant_correct(probs, ta_f, label))
    assert torch.equal(team.boundary, assistant_correct(team.false_pixel, ta_b, label))
    assert torch.equal(team.ultimate, similarity_correct(team.boundary, features, label))
    assert torch.equal(team.ultimate.argmax(1), label)
    vanilla = team_soft_labels(probs, None, label, sc=False)
    assert vanilla.initial is probs and vanilla.false_pixel is probs and vanilla.ultimate is probs
    only_b = team_soft_labels(probs, None, label, ta_b_probs=ta_b, sc=False)
    assert only_b.false_pixel is probs and only_b.ultimate is only_b.boundary
    with pytest.raises(ValueError):
        team_soft_labels(probs, None, label)


def test_plckd_kl_against_a_loop():
    g = gen(7)
    z_s = torch.randn(2, 3, 4, 5, generator=g, dtype=D, requires_grad=True)
    soft = torch.softmax(torch.randn(2, 3, 4, 5, generator=g, dtype=D), 1)
    soft[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0], dtype=D)  # exact zeros, as SC's fallback may give
    soft.requires_grad_(True)
    mask = torch.ones(2, 4, 5, dtype=torch.bool)
    mask[1, 2:] = False
    total, n = 0.0, 0
    for b, i, j in np.ndindex(2, 4, 5):
        if not mask[b, i, j]:
            continue
        s = [math.exp(v) for v in z_s[b, :, i, j].tolist()]
        s = [v / sum(s) for v in s]
        total += sum(p * math.log(p / q) for p, q in zip(soft[b, :, i, j].tolist(), s) if p > 0)
        n += 1
    loss = plckd_kl(z_s, soft, weight=0.7, mask=mask)
    assert float(loss.detach()) == pytest.approx(0.7 * total / n, rel=REL)
    loss.backward()
    assert soft.grad is None and z_s.grad is not None and z_s.grad.abs().sum() > 0


# ---------------------------------------------------------------- ensemble


def members(dims, k=3, seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d if dims == 2 else nn.Conv3d
    return [conv(2, 3, 3, padding=1) for _ in range(k)]


def hand_mean(logit_list):
    """Mean over members of each pixel's softmax, by a loop in float64."""
    first = logit_list[0]
    out = torch.zeros_like(first, dtype=D)
    for z in logit_list:
        for index in np.ndindex(first.shape[0], *first.shape[2:]):
            b, pos = index[0], index[1:]
            values = [float(z[(b, c, *pos)]) for c in range(first.shape[1])]
            e = [math.exp(v - max(values)) for v in values]
            for c in range(first.shape[1]):
                out[(b, c, *pos)] += e[c] / sum(e) / len(logit_list)
    return out


@pytest.mark.parametrize("dims", [2, 3])
def test_ensemble_is_the_mean_of_member_softmaxes(dims):
    nets = members(dims)
    x = torch.randn(2, 2, *(5,) * dims, generator=gen(8))
    teacher = EnsembleTeacher(nets)
    with torch.no_grad():
        logits = [net(x) for net in nets]
        expected = hand_mean(logits)
        torch.testing.assert_close(mean_probabilities([z.double() for z in logits]), expected,
                                   rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.softmax(teacher(x), 1).double(), expected, rtol=0, atol=1e-6)
        torch.testing.assert_close(teacher(x).exp().double(), expected, rtol=0, atol=1e-6)  # log of the mean
        torch.testing.assert_close(teacher.probabilities(x).double(), expected, rtol=0, atol=1e-6)


def test_ensemble_resizes_members_and_stays_finite():
    big = torch.randn(1, 2, 6, 6, generator=gen(9), dtype=D)
    small = torch.randn(1, 2, 3, 3, generator=gen(10), dtype=D)
    resized = F.interpolate(small, size=(6, 6), mode="bilinear", align_corners=False)
    torch.testing.assert_close(mean_probabilities([small, big]), hand_mean([resized, big]))
    far = torch.tensor([0.0, 200.0]).view(1, 2, 1, 1)  # class 0's probability underflows in float32
    out = EnsembleTeacher([nn.Identity(), nn.Identity()])(far)
    assert torch.isfinite(out).all() and float(out[0, 0] - out[0, 1]) == pytest.approx(-200.0)


@pytest.mark.parametrize("soft_loss", ["mse", "kl"])
def test_ensemble_loss_against_a_loop(soft_loss):
    g = gen(11)
    B, K, H, W = 2, 3, 4, 5
    z_s = torch.randn(B, K, H, W, generator=g, dtype=D, requires_grad=True)
    mean = torch.softmax(torch.randn(B, K, H, W, generator=g, dtype=D), 1).requires_grad_(True)
    label = torch.randint(0, K, (B, H, W), generator=g)
    label[0, 0] = 255
    soft, hard, n = 0.0, 0.0, 0
    for b, i, j in np.ndindex(B, H, W):
        if int(label[b, i, j]) == 255:
            continue
        e = [math.exp(v) for v in z_s[b, :, i, j].tolist()]
        s = [v / sum(e) for v in e]
        p = mean[b, :, i, j].tolist()
        if soft_loss == "mse":
            soft += sum((a - c) ** 2 for a, c in zip(s, p)) / K
        else:
            soft += sum(c * math.log(c / a) for a, c in zip(s, p))
        hard += -math.log(s[int(label[b, i, j])])
        n += 1
    terms = ensemble_loss(z_s, mean, label, soft_loss=soft_loss, ignore_index=255)
    assert float(terms["soft"].detach()) == pytest.approx(soft / n, rel=REL)
    assert float(terms["hard"].detach()) == pytest.approx(hard / n, rel=REL)
    (terms["soft"] + terms["hard"]).backward()
    assert mean.grad is None and z_s.grad.abs().sum() > 0


# ---------------------------------------------------------------- pictures


def test_fig_bt_picture_is_reproducible(tmp_path):
    from kdbench.teachers.pictures import fig_bt_figure

    first = fig_bt_figure(tmp_path / "a" / "fig_bt.png", size=64)
    second = fig_bt_figure(tmp_path / "b.png", size=64)
    data = first.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000
    assert data == second.read_bytes()
