"""Every method's value against an independent formula written here, pixel by pixel or
pair by pair, following the reference cards of ``methods.md`` (reductions, defaults,
resizing): rel. 1e-5 in float64.  Every value is checked on 2D maps ``(B, C, H, W)`` and on
3D maps ``(B, C, D, H, W)`` (``dims``); the references index positions of any
dimensionality."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from kdbench.methods import Batch, Outputs, create_method
from kdbench.models.roles import FeatureRole

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

REL = 1e-5
D = torch.float64
DIMS = pytest.mark.parametrize("dims", [2, 3])


def sp(dims, *hw, d=2):
    """A spatial size: ``hw`` in 2D, ``(d, *hw)`` in 3D."""
    return tuple(hw) if dims == 2 else (d, *hw)


def rnd(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D) * scale


def roles(**channels):
    return {role: FeatureRole(role, c, 1) for role, c in channels.items()}


def make(name, s=None, t=None, num_classes=2, **params):
    method = create_method(name, student_roles=roles(**(s or {})), teacher_roles=roles(**(t or {})),
                           num_classes=num_classes, **params)
    return method.double()


def set_adapter(method, role, weight, attr="adapters"):
    with torch.no_grad():
        getattr(method, attr)[role].weight.copy_(weight.view(*weight.shape, *(1, 1)))


def resize(x, size):
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear" if x.dim() == 4 else "trilinear", align_corners=False)


def downsample_labels(y, factor):
    """Nearest resize by an integer factor: pixel i of the output reads pixel factor·i."""
    index = tuple(slice(None, None, factor) for _ in y.shape[1:])
    return y[(slice(None), *index)]


def softmax(v):
    e = torch.exp(v - v.max())
    return e / e.sum()


def kl(p, q):
    return float((p * (p.log() - q.log())).sum())


def unit(v):
    """``v / ‖v‖`` (a zero vector stays zero, as with ``F.normalize``)."""
    return v / v.norm().clamp_min(1e-12)


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def positions(shape):
    return list(itertools.product(*(range(n) for n in shape)))


# ---------------------------------------------------------------- references


def ref_kd(z_s, z_t, T, valid=None):
    z_t = resize(z_t, z_s.shape[2:])
    total, n = 0.0, 0
    for b in range(z_s.shape[0]):
        for pos in positions(z_s.shape[2:]):
            if valid is not None and not valid[(b, *pos)]:
                continue
            total += kl(softmax(z_t[(b, slice(None), *pos)] / T), softmax(z_s[(b, slice(None), *pos)] / T))
            n += 1
    return T * T * total / n


def attention(f, p):
    a = (f ** p).mean(dim=1).reshape(f.shape[0], -1)
    return torch.stack([unit(v) for v in a])


def adapted(w, f):
    return torch.einsum("oc,bc...->bo...", w, f)


def block_max(f, k):
    """Max over k-blocks (stride k, the last block may be partial); ``k`` an int or one per axis."""
    spatial = f.shape[2:]
    k = (k,) * len(spatial) if isinstance(k, int) else tuple(k)
    out_shape = [math.ceil(n / kk) for n, kk in zip(spatial, k)]
    out = torch.empty(*f.shape[:2], *out_shape, dtype=f.dtype)
    for pos in positions(out_shape):
        window = tuple(slice(i * kk, (i + 1) * kk) for i, kk in zip(pos, k))
        out[(slice(None), slice(None), *pos)] = f[(slice(None), slice(None), *window)].flatten(2).amax(dim=2)
    return out


def ref_affinity(f):
    b, c = f.shape[:2]
    cols = f.reshape(b, c, -1)
    n = cols.shape[2]
    a = torch.empty(b, n, n, dtype=f.dtype)
    for i in range(b):
        u = [unit(cols[i, :, m]) for m in range(n)]
        for m in range(n):
            for q in range(n):
                a[i, m, q] = u[m] @ u[q]
    return a


def ref_pa(f_s, f_t, k):
    f_s = resize(f_s, f_t.shape[2:])
    return float(((ref_affinity(block_max(f_s, k)) - ref_affinity(block_max(f_t, k))) ** 2).mean())


# ---------------------------------------------------------------- response-based


@DIMS
def test_kd_value_with_ignored_pixels(dims):
    size = sp(dims, 4, 5)
    z_s, z_t = rnd(2, 3, *size, seed=1, scale=3), rnd(2, 3, *size, seed=2, scale=3)
    y = torch.randint(0, 3, (2, *size), generator=torch.Generator().manual_seed(3))
    y.view(2, -1)[0, :3] = 255
    terms = make("kd")(Outputs(z_s), Outputs(z_t), Batch(torch.zeros(2, 1, *size), y, ignore_index=255))
    assert float(terms["kd"]) == pytest.approx(ref_kd(z_s, z_t, 4.0, y != 255), rel=REL)


@DIMS
def test_kd_resizes_teacher_logits_to_student(dims):
    small, big = sp(dims, 4, 4, d=1), sp(dims, 8, 8, d=2)
    z_s, z_t = rnd(2, 3, *small, seed=1), rnd(2, 3, *big, seed=2)
    terms = make("kd", T=2.0, weight=0.5)(Outputs(z_s), Outputs(z_t), Batch(torch.zeros(2, 1, *big),
                                                                            torch.zeros(2, *big).long()))
    assert float(terms["kd"]) == pytest.approx(0.5 * ref_kd(z_s, z_t, 2.0), rel=REL)


@DIMS
@pytest.mark.parametrize("step,total,factor", [(50, 100, 1.0), (5, 100, 0.25), (0, 100, 0.0)])
def test_dkd_value(dims, step, total, factor):
    size = sp(dims, 3, 3)
    z_s, z_t = rnd(2, 4, *size, seed=4, scale=2), rnd(2, 4, *size, seed=5, scale=2)
    y = torch.randint(0, 4, (2, *size), generator=torch.Generator().manual_seed(6))
    T, alpha, beta = 4.0, 1.0, 8.0
    tckd = nckd = 0.0
    cells = positions((2, *size))
    for b, *pos in cells:
        at = (b, slice(None), *pos)
        p_s, p_t = softmax(z_s[at] / T), softmax(z_t[at] / T)
        c = int(y[(b, *pos)])
        tckd += kl(torch.stack([p_t[c], 1 - p_t[c]]), torch.stack([p_s[c], 1 - p_s[c]]))
        rest = [k for k in range(4) if k != c]
        nckd += kl(p_t[rest] / (1 - p_t[c]), p_s[rest] / (1 - p_s[c]))
    terms = make("dkd", num_classes=4)(Outputs(z_s), Outputs(z_t),
                                       Batch(torch.zeros(2, 1, *size), y, step=step, total_steps=total))
    scale = factor * T * T / len(cells)
    assert float(terms["tckd"]) == pytest.approx(scale * alpha * tckd, rel=REL, abs=1e-12)
    assert float(terms["nckd"]) == pytest.approx(scale * beta * nckd, rel=REL, abs=1e-12)


def ref_cwd(x_s, x_t, T):
    b, c = x_s.shape[:2]
    total = sum(kl(softmax(x_t[i, k].flatten() / T), softmax(x_s[i, k].flatten() / T))
                for i in range(b) for k in range(c))
    return T * T * total / (b * c)


@DIMS
def test_cwd_value_logits_and_features(dims):
    small, big = sp(dims, 4, 4, d=2), sp(dims, 8, 8, d=3)
    z_s, z_t = rnd(2, 3, *small, seed=1, scale=2), rnd(2, 3, *big, seed=2, scale=2)
    f_s, f_t = rnd(2, 3, *small, seed=3), rnd(2, 5, *big, seed=4)
    w = rnd(5, 3, seed=5)
    method = make("cwd", s={"pre_logits": 3}, t={"pre_logits": 5}, features=True)
    set_adapter(method, "pre_logits", w)
    terms = method(Outputs(z_s, {"pre_logits": f_s}), Outputs(z_t, {"pre_logits": f_t}),
                   Batch(torch.zeros(2, 1, *big), torch.zeros(2, *big).long()))
    assert float(terms["cwd"]) == pytest.approx(3.0 * ref_cwd(z_s, resize(z_t, small), 4.0), rel=REL)
    ref_feat = ref_cwd(adapted(w, f_s), resize(f_t, small), 4.0)
    assert float(terms["cwd_feat"]) == pytest.approx(50.0 * ref_feat, rel=REL)


# ---------------------------------------------------------------- feature-based


@pytest.mark.parametrize("dims", [2, 3])
def test_at_value(dims):
    sizes = {2: ((4, 4), (8, 8), (2, 2), (4, 4)), 3: ((2, 3, 3), (2, 6, 6), (1, 2, 2), (2, 3, 3))}[dims]
    s = {"low": rnd(2, 3, *sizes[0], seed=1), "high": rnd(2, 4, *sizes[2], seed=2)}
    t = {"low": rnd(2, 5, *sizes[1], seed=3), "high": rnd(2, 6, *sizes[3], seed=4)}
    ref = sum(float(((attention(resize(s[r], t[r].shape[2:]), 2) - attention(t[r], 2)) ** 2).mean())
              for r in ("low", "high"))
    terms = make("at")(Outputs(rnd(2, 2, 4, 4), s), Outputs(rnd(2, 2, 4, 4), t), None)
    assert float(terms["at"]) == pytest.approx(1000 * ref, rel=REL)


@pytest.mark.parametrize("dims", [2, 3])
def test_fitnet_and_mimic_values(dims):
    s_size, t_size = ((3, 3), (6, 6)) if dims == 2 else ((1, 3, 3), (2, 6, 6))
    f_s, f_t = rnd(2, 3, *s_size, seed=1), rnd(2, 5, *t_size, seed=2)
    w = rnd(5, 3, seed=3)
    a = adapted(w, resize(f_s, t_size))
    for name, role, weight in (("fitnet", "pre_logits", 10.0), ("mimic", "high", 1.0)):
        method = make(name, s={role: 3}, t={role: 5})
        set_adapter(method, role, w)
        terms = method(Outputs(rnd(2, 2, *s_size), {role: f_s}), Outputs(rnd(2, 2, *t_size), {role: f_t}), None)
        per_position = ((a - f_t) ** 2).mean(dim=1)  # mean over channels, then positions
        assert float(terms[name]) == pytest.approx(weight * float(per_position.mean()), rel=REL)


# ---------------------------------------------------------------- relation-based


@DIMS
def test_spkd_value(dims):
    f_s, f_t = rnd(4, 3, *sp(dims, 2, 2, d=1), seed=1), rnd(4, 6, *sp(dims, 4, 4, d=2), seed=2)

    def gram(f):
        q = f.reshape(4, -1)
        g = torch.tensor([[float(q[i] @ q[j]) for j in range(4)] for i in range(4)], dtype=D)
        return torch.stack([unit(row) for row in g])

    ref = float(((gram(f_t) - gram(resize(f_s, f_t.shape[2:]))) ** 2).sum()) / 16
    terms = make("spkd")(Outputs(rnd(4, 2, *f_s.shape[2:]), {"high": f_s}),
                         Outputs(rnd(4, 2, *f_t.shape[2:]), {"high": f_t}), None)
    assert float(terms["spkd"]) == pytest.approx(3000 * ref, rel=REL)


@pytest.mark.parametrize("dims", [2, 3])
def test_pa_value(dims):
    s_size, t_size = ((3, 3), (5, 5)) if dims == 2 else ((2, 2, 3), (3, 3, 5))
    f_s, f_t = rnd(2, 3, *s_size, seed=1), rnd(2, 4, *t_size, seed=2)
    terms = make("pa")(Outputs(rnd(2, 2, *s_size), {"pre_logits": f_s}),
                       Outputs(rnd(2, 2, *t_size), {"pre_logits": f_t}), None)
    assert float(terms["pa"]) == pytest.approx(10 * ref_pa(f_s, f_t, 2), rel=REL)


@DIMS
def test_pa_pools_by_fraction_of_the_map(dims):
    size = sp(dims, 6, 6, d=4)
    f_s, f_t = rnd(2, 3, *size, seed=1), rnd(2, 4, *size, seed=2)
    terms = make("pa", pool={"fraction": 0.5})(Outputs(rnd(2, 2, *size), {"pre_logits": f_s}),
                                               Outputs(rnd(2, 2, *size), {"pre_logits": f_t}), None)
    half = tuple(n // 2 for n in size)  # a kernel half the map along every axis
    assert float(terms["pa"]) == pytest.approx(10 * ref_pa(f_s, f_t, half), rel=REL)


@DIMS
def test_skd_value(dims):
    small, big = sp(dims, 4, 4, d=2), sp(dims, 8, 8, d=4)
    z_s, z_t = rnd(2, 2, *small, seed=1), rnd(2, 2, *big, seed=2)
    f_s, f_t = rnd(2, 3, *small, seed=3), rnd(2, 4, *big, seed=4)
    image = rnd(2, 1, *big, seed=5)
    method = make("skd")
    terms = method(Outputs(z_s, {"pre_logits": f_s}), Outputs(z_t, {"pre_logits": f_t}),
                   Batch(image, torch.zeros(2, *big).long()))
    assert float(terms["pi"]) == pytest.approx(ref_kd(z_s, z_t, 4.0), rel=REL)
    assert float(terms["pa"]) == pytest.approx(10 * ref_pa(f_s, f_t, 2), rel=REL)
    assert all(isinstance(m, torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d)
               for m in method.discriminator.net if not isinstance(m, torch.nn.LeakyReLU))
    pair = torch.cat([resize(image, small), torch.softmax(z_s, dim=1)], dim=1)
    critic = method.discriminator.net(pair).flatten(1).mean(dim=1)
    assert float(terms["adv"]) == pytest.approx(-0.001 * float(critic.mean()), rel=REL)


def ref_ifvd(f_s, f_t, y, num_classes, valid):
    f_s = resize(f_s, f_t.shape[2:])
    total, n = 0.0, 0
    for b in range(f_t.shape[0]):
        cells = positions(f_t.shape[2:])

        def proto(f, k):
            members = [p for p in cells if valid[(b, *p)] and int(y[(b, *p)]) == k]
            return sum((f[(b, slice(None), *p)] for p in members), torch.zeros(f.shape[1], dtype=D)) / (
                len(members) + 1e-6)

        protos_s = [proto(f_s, k) for k in range(num_classes)]
        protos_t = [proto(f_t, k) for k in range(num_classes)]
        for p in cells:
            if not valid[(b, *p)]:
                continue
            k = int(y[(b, *p)])
            m_s = cos(f_s[(b, slice(None), *p)], protos_s[k])
            m_t = cos(f_t[(b, slice(None), *p)], protos_t[k])
            total += (m_s - m_t) ** 2
            n += 1
    return total / n


@DIMS
def test_ifvd_value_with_ignore_and_resizing(dims):
    f_s, f_t = rnd(2, 3, *sp(dims, 2, 2, d=1), seed=1), rnd(2, 5, *sp(dims, 4, 4, d=2), seed=2)
    size = sp(dims, 8, 8, d=4)
    y = torch.randint(0, 3, (2, *size), generator=torch.Generator().manual_seed(3))
    y[1, ..., :4, :] = 255
    y_feat = downsample_labels(y, 2)
    valid = y_feat != 255
    terms = make("ifvd", num_classes=3)(Outputs(rnd(2, 3, *size), {"pre_logits": f_s}),
                                        Outputs(rnd(2, 3, *size), {"pre_logits": f_t}),
                                        Batch(torch.zeros(2, 1, *size), y, ignore_index=255))
    assert float(terms["ifvd"]) == pytest.approx(20 * ref_ifvd(f_s, f_t, y_feat, 3, valid), rel=REL)


def ref_mini_batch(f_s, f_t, tau):
    b = f_s.shape[0]
    cols_s, cols_t = f_s.reshape(b, f_s.shape[1], -1), f_t.reshape(b, f_t.shape[1], -1)
    n = cols_s.shape[2]
    u_s = [torch.stack([unit(cols_s[i, :, m]) for m in range(n)]) for i in range(b)]  # (n, C) each
    u_t = [torch.stack([unit(cols_t[i, :, m]) for m in range(n)]) for i in range(b)]
    total = 0.0
    for i, j in itertools.product(range(b), repeat=2):
        rows = []
        for r in range(n):  # position r of image i against every position of image j
            s_row, t_row = u_s[j] @ u_s[i][r], u_t[j] @ u_t[i][r]
            rows.append(kl(softmax(t_row / tau), softmax(s_row / tau)))
        total += sum(rows) / n
    return total / b ** 2


@DIMS
@pytest.mark.parametrize("pool_min", [256, 8])
def test_cirkd_mini_batch_value(dims, pool_min):
    small, big = sp(dims, 4, 4, d=1), sp(dims, 8, 8, d=2)
    f_s, f_t = rnd(2, 3, *small, seed=1), rnd(2, 5, *big, seed=2)
    method = make("cirkd", lambda_pixel=0.0, lambda_region=0.0, pool_min=pool_min)
    terms = method(Outputs(rnd(2, 2, *big), {"pre_logits": f_s}), Outputs(rnd(2, 2, *big), {"pre_logits": f_t}),
                   Batch(torch.zeros(2, 1, *big), torch.zeros(2, *big).long()))
    r_s, r_t = resize(f_s, big), f_t
    if pool_min == 8:  # 8×8 planes are pooled 4×4 when the threshold is 8 (in-plane only in 3D)
        r_s, r_t = (x.reshape(*x.shape[:-2], 2, 4, 2, 4).mean(dim=(-3, -1)) for x in (r_s, r_t))
    assert set(terms) == {"mb"}
    assert float(terms["mb"]) == pytest.approx(ref_mini_batch(r_s, r_t, 0.1), rel=REL)


@DIMS
def test_cirkd_memory_value(dims):
    """Eval mode (no enqueue, BatchNorm at its initial running statistics), queues set by hand."""
    cs, ct, k = 3, 4, 3
    method = make("cirkd", s={"pre_logits": cs}, t={"pre_logits": ct}, num_classes=k, lambda_mb=0.0,
                  pixel_memory=6, region_memory=2, pixel_contrast=6, region_contrast=2).eval()
    w1, w2 = rnd(ct, cs, seed=1), rnd(ct, ct, seed=2)
    with torch.no_grad():
        method.head["pre_logits"][0].weight.copy_(w1.view(ct, cs, 1, 1))
        method.head["pre_logits"][3].weight.copy_(w2.view(ct, ct, 1, 1))
        method.pixel_queue.copy_(F.normalize(rnd(k, 6, ct, seed=3), dim=2))
        method.region_queue.copy_(F.normalize(rnd(k, 2, ct, seed=4), dim=2))
        method.pixel_count.copy_(torch.tensor([6, 9, 5]))  # class 2's pixel queue is not full yet
        method.region_count.copy_(torch.tensor([2, 2, 2]))
    size = sp(dims, 4, 4, d=2)
    f_s, f_t = rnd(2, cs, *sp(dims, 2, 2, d=1), seed=5), rnd(2, ct, *size, seed=6)
    y = torch.randint(0, k, (2, *size), generator=torch.Generator().manual_seed(7))
    y[0, ..., 0, :] = 255
    terms = method(Outputs(rnd(2, k, *size), {"pre_logits": f_s}), Outputs(rnd(2, k, *size), {"pre_logits": f_t}),
                   Batch(torch.zeros(2, 1, *size), y, ignore_index=255))

    h = torch.relu(adapted(w1, resize(f_s, size)) / math.sqrt(1 + 1e-5))
    proj = adapted(w2, h)
    anchors = [(unit(proj[(b, slice(None), *pos)]), unit(f_t[(b, slice(None), *pos)]))
               for b, *pos in positions((2, *size)) if int(y[(b, *pos)]) != 255]

    def memory(bank):
        sims = lambda anchor: torch.stack([anchor @ entry for entry in bank]) / 0.1
        return sum(kl(softmax(sims(t)), softmax(sims(s))) for s, t in anchors) / len(anchors)

    pixel_bank = [method.pixel_queue[c, m] for c in (0, 1) for m in range(6)]
    region_bank = [method.region_queue[c, m] for c in range(3) for m in range(2)]
    assert set(terms) == {"mb", "pixel_mem", "region_mem"}
    assert float(terms["pixel_mem"]) == pytest.approx(0.1 * memory(pixel_bank), rel=REL)
    assert float(terms["region_mem"]) == pytest.approx(0.1 * memory(region_bank), rel=REL)


def neighbours(dims):
    return [o for o in itertools.product((-1, 0, 1), repeat=dims) if any(o)]


def ref_local(f_s, f_t, w):
    g_s = adapted(w, resize(f_s, f_t.shape[2:]))
    g_s, g_t = g_s / g_s.norm(dim=1, keepdim=True), f_t / f_t.norm(dim=1, keepdim=True)
    spatial = f_t.shape[2:]
    total, n = 0.0, 0
    for b in range(f_t.shape[0]):
        for p in positions(spatial):
            for o in neighbours(len(spatial)):
                q = tuple(a + d for a, d in zip(p, o))
                if not all(0 <= a < size for a, size in zip(q, spatial)):
                    continue
                d_s = g_s[(b, slice(None), *p)] - g_s[(b, slice(None), *q)]
                d_t = g_t[(b, slice(None), *p)] - g_t[(b, slice(None), *q)]
                total += float(((d_s - d_t) ** 2).sum())
                n += 1
    return total / n


@pytest.mark.parametrize("dims", [2, 3])
def test_local_value(dims):
    s_size, t_size = ((2, 3), (4, 5)) if dims == 2 else ((1, 2, 3), (2, 3, 3))
    f_s, f_t = rnd(2, 3, *s_size, seed=1), rnd(2, 4, *t_size, seed=2)
    logits = sp(dims, 4, 5)
    z_s, z_t = rnd(2, 2, *logits, seed=3), rnd(2, 2, *logits, seed=4)
    w = rnd(4, 3, seed=5)
    method = make("local", s={"pre_logits": 3}, t={"pre_logits": 4})
    set_adapter(method, "pre_logits", w)
    terms = method(Outputs(z_s, {"pre_logits": f_s}), Outputs(z_t, {"pre_logits": f_t}),
                   Batch(torch.zeros(2, 1, *logits), torch.zeros(2, *logits).long()))
    assert float(terms["kd"]) == pytest.approx(ref_kd(z_s, z_t, 4.0), rel=REL)
    assert float(terms["local"]) == pytest.approx(ref_local(f_s, f_t, w), rel=REL)


# ---------------------------------------------------------------- EMKD


def ref_imd(f_s, f_t, p=4):
    f_s = resize(f_s, f_t.shape[2:])
    per_image = []
    for b in range(f_t.shape[0]):
        a_s = unit((f_s[b].abs() ** p).mean(dim=0).flatten())
        a_t = unit((f_t[b].abs() ** p).mean(dim=0).flatten())
        per_image.append(float(((a_s - a_t) ** 2).sum()))
    return sum(per_image) / len(per_image)


def ref_rad(f_s, f_t, y, num_classes, eps=1e-6):
    f_s = resize(f_s, f_t.shape[2:])
    per_image = []
    for b in range(f_t.shape[0]):
        cells = positions(f_t.shape[2:])
        present, protos_s, protos_t = [], {}, {}
        for k in range(num_classes):
            members = [p for p in cells if int(y[(b, *p)]) == k]
            if members:
                present.append(k)
                protos_s[k] = sum(f_s[(b, slice(None), *p)] for p in members) / (len(members) + eps)
                protos_t[k] = sum(f_t[(b, slice(None), *p)] for p in members) / (len(members) + eps)
        pairs = list(itertools.combinations(present, 2))
        if pairs:
            per_image.append(sum((cos(protos_s[k], protos_s[l]) - cos(protos_t[k], protos_t[l])) ** 2
                                 for k, l in pairs) / len(pairs))
    return sum(per_image) / len(per_image) if per_image else 0.0


def emkd_inputs(y):
    """Student/teacher outputs for labels ``y`` ``(3, *spatial)``: ``low`` at the labels' size
    (the student's at half), ``high`` at half (the student's at a quarter), 2D or 3D."""
    size = y.shape[1:]
    half = tuple(n // 2 for n in size)
    quarter = tuple(max(1, n // 4) for n in size)
    s = {"low": rnd(3, 2, *half, seed=1), "high": rnd(3, 3, *quarter, seed=2)}
    t = {"low": rnd(3, 4, *size, seed=3), "high": rnd(3, 5, *half, seed=4)}
    z_s, z_t = rnd(3, 3, *size, seed=5, scale=2), rnd(3, 3, *size, seed=6, scale=2)
    return Outputs(z_s, s), Outputs(z_t, t), Batch(torch.zeros(3, 1, *size), y)


@DIMS
def test_emkd_value_multiclass(dims):
    y = torch.randint(0, 3, (3, *sp(dims, 8, 8, d=4)), generator=torch.Generator().manual_seed(7))
    y[1] = 0  # one class only: no pair, left out of the mean over images
    y[2] = 1
    y[2, ..., :4, :4] = 2  # two classes: one pair
    student, teacher, batch = emkd_inputs(y)
    terms = make("emkd", num_classes=3)(student, teacher, batch)
    pmd = ref_kd(student.logits, teacher.logits, 4.0)
    imd = sum(ref_imd(student.features[r], teacher.features[r]) for r in ("low", "high"))
    rad = ref_rad(student.features["low"], teacher.features["low"], y, 3) + ref_rad(
        student.features["high"], teacher.features["high"], downsample_labels(y, 2), 3)
    assert rad > 0
    assert float(terms["pmd"]) == pytest.approx(0.1 * pmd, rel=REL)
    assert float(terms["imd"]) == pytest.approx(0.9 * imd, rel=REL)
    assert float(terms["rad"]) == pytest.approx(0.9 * rad, rel=REL)


@DIMS
def test_emkd_rad_is_zero_without_pairs_and_finite_on_all_foreground(dims):
    for fill in (0, 1):
        student, teacher, batch = emkd_inputs(torch.full((3, *sp(dims, 8, 8, d=4)), fill))
        terms = make("emkd", num_classes=2, parts=["rad", "imd"])(student, teacher, batch)
        assert float(terms["rad"]) == 0.0 and math.isfinite(float(terms["imd"]))


@DIMS
def test_emkd_weights_follow_table_vi(dims):
    y = torch.randint(0, 2, (3, *sp(dims, 8, 8, d=4)), generator=torch.Generator().manual_seed(8))
    student, teacher, batch = emkd_inputs(y)
    base = make("emkd")(student, teacher, batch)
    doubled = make("emkd", alpha=0.2, beta1=1.8, beta2=1.8)(student, teacher, batch)
    for part in ("pmd", "imd", "rad"):
        assert float(doubled[part]) == pytest.approx(2 * float(base[part]), rel=REL)


# ---------------------------------------------------------------- seed papers' soft labels, none, compose


def probs_at(z, size):
    """The softmax of logits ``z``, resized (bilinear/trilinear) to ``size``."""
    return resize(torch.softmax(z, dim=1), size)


@DIMS
@pytest.mark.parametrize("soft_loss", ["mse", "kl"])
def test_ensemble_value(dims, soft_loss):
    """Noothout et al. Eq. 1: MSE (or KL) to the teacher's mean probabilities + CE to the labels."""
    small, big = sp(dims, 3, 4, d=2), sp(dims, 6, 8, d=4)
    z_s, z_t = rnd(2, 3, *small, seed=1, scale=2), rnd(2, 3, *big, seed=2, scale=2)
    y = torch.randint(0, 3, (2, *big), generator=torch.Generator().manual_seed(3))
    y.view(2, -1)[1, :5] = 255
    target, y_small = probs_at(z_t, small), downsample_labels(y, 2)
    soft = hard = 0.0
    n = 0
    for b, *pos in positions((2, *small)):
        c = int(y_small[(b, *pos)])
        if c == 255:
            continue
        p_s, p_t = softmax(z_s[(b, slice(None), *pos)]), target[(b, slice(None), *pos)]
        soft += float(((p_s - p_t) ** 2).mean()) if soft_loss == "mse" else kl(p_t, p_s)
        hard += -math.log(float(p_s[c]))
        n += 1
    terms = make("ensemble", num_classes=3, soft_loss=soft_loss, weight=0.5)(
        Outputs(z_s), Outputs(z_t), Batch(torch.zeros(2, 1, *big), y, ignore_index=255))
    assert set(terms) == {"soft", "hard"}
    assert float(terms["soft"]) == pytest.approx(0.5 * soft / n, rel=REL)
    assert float(terms["hard"]) == pytest.approx(hard / n, rel=REL)


@DIMS
def test_plckd_value(dims):
    """PLC-KD Eq. 1's distillation term: λ · mean over valid pixels of KL(Y ‖ softmax(z_s))."""
    size, big = sp(dims, 4, 4, d=2), sp(dims, 8, 8, d=4)
    z_s, z_t = rnd(2, 3, *size, seed=1, scale=2), rnd(2, 3, *big, seed=2, scale=2)
    y = torch.randint(0, 3, (2, *size), generator=torch.Generator().manual_seed(3))
    y.view(2, -1)[0, :6] = 255
    target = probs_at(z_t, size)
    values = [kl(target[(b, slice(None), *pos)], softmax(z_s[(b, slice(None), *pos)]))
              for b, *pos in positions((2, *size)) if int(y[(b, *pos)]) != 255]
    terms = make("plckd", num_classes=3, weight=0.5)(Outputs(z_s), Outputs(z_t),
                                                     Batch(torch.zeros(2, 1, *size), y, ignore_index=255))
    assert float(terms["plckd"]) == pytest.approx(0.5 * sum(values) / len(values), rel=REL)


@DIMS
def test_none_and_compose_values(dims):
    """``none`` adds nothing; ``compose`` gives each part's own value under ``<label>.<term>``."""
    small, big = sp(dims, 4, 4, d=2), sp(dims, 8, 8, d=4)
    z_s, z_t = rnd(2, 3, *small, seed=1), rnd(2, 3, *big, seed=2)
    s = {"low": rnd(2, 3, *small, seed=3), "high": rnd(2, 4, *small, seed=4)}
    t = {"low": rnd(2, 5, *big, seed=5), "high": rnd(2, 6, *big, seed=6)}
    batch = Batch(torch.zeros(2, 1, *big), torch.zeros(2, *big).long())
    assert make("none")(Outputs(z_s, s), None, batch) == {}
    terms = make("compose", methods=["kd", {"name": "at", "weight": 10.0, "label": "att"}])(
        Outputs(z_s, s), Outputs(z_t, t), batch)
    at = sum(float(((attention(resize(s[r], big), 2) - attention(t[r], 2)) ** 2).mean()) for r in ("low", "high"))
    assert set(terms) == {"kd.kd", "att.at"}
    assert float(terms["kd.kd"]) == pytest.approx(ref_kd(z_s, z_t, 4.0), rel=REL)
    assert float(terms["att.at"]) == pytest.approx(10 * at, rel=REL)
