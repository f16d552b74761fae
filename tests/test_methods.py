"""The method registry: every method runs on 2D and 3D maps, mismatched pairs and
degenerate labels, sends gradients to the student and its adapters but never to the
teacher, and is zero where the student equals the teacher.  Exact values against
independent formulas are in ``test_methods_values.py``."""

import math
from pathlib import Path

import pytest
import torch
import yaml

from kdbench.errors import ConfigError, KdbenchError
from kdbench.methods import METHODS, Batch, Outputs, create_method, list_methods, method_params
from kdbench.methods.pages import all_method_pages, method_page
from kdbench.models.roles import FeatureRole

pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")

NAMES = ["kd", "fitnet", "at", "spkd", "pa", "skd", "ifvd", "cirkd", "dkd", "cwd", "mimic", "local", "emkd"]

# name -> (hyper-parameters, terms that vanish when the student equals the teacher)
CONFIGS = {
    "kd": ({}, ["kd"]),
    "fitnet": ({}, ["fitnet"]),
    "at": ({}, ["at"]),
    "spkd": ({}, ["spkd"]),
    "pa": ({}, ["pa"]),
    "skd": ({}, ["pi", "pa"]),
    "ifvd": ({}, ["ifvd"]),
    "cirkd": ({"pixel_memory": 4, "region_memory": 2}, ["mb"]),  # queues full after one step
    "dkd": ({}, ["tckd", "nckd"]),
    "cwd": ({"features": True}, ["cwd", "cwd_feat"]),
    "mimic": ({"layers": ["low", "high"]}, ["mimic"]),
    "local": ({}, ["kd", "local"]),
    "emkd": ({}, ["pmd", "imd", "rad"]),
    "emkd_rad": ({"parts": ["rad"]}, ["rad"]),
    "compose": ({"methods": ["kd", {"name": "at", "weight": 10.0}, "fitnet"]}, ["kd.kd", "at.at", "fitnet.fitnet"]),
}
ROLE_NAMES = ("low", "high", "pre_logits")
K = 3  # classes


def roles(channels):
    return {role: FeatureRole(role, c, 1) for role, c in zip(ROLE_NAMES, channels)}


def build(key, s_channels=(3, 5, 4), t_channels=(6, 7, 5), num_classes=K):
    params, _ = CONFIGS[key]
    name = key.split("_")[0]
    torch.manual_seed(0)
    return create_method(name, student_roles=roles(s_channels), teacher_roles=roles(t_channels),
                         num_classes=num_classes, **params)


def net_outputs(channels, sizes, logit_size, b=2, grad=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {r: torch.randn(b, c, *s, generator=g).requires_grad_(grad)
             for r, c, s in zip(ROLE_NAMES, channels, sizes)}
    return Outputs(torch.randn(b, K, *logit_size, generator=g).requires_grad_(grad), feats)


def labels(shape, kind="mixed", b=2):
    if kind == "fg":
        return torch.full((b, *shape), K - 1)
    if kind == "bg":
        return torch.zeros((b, *shape), dtype=torch.long)
    y = torch.zeros((b, *shape), dtype=torch.long)
    y[..., : shape[-1] // 2] = 1
    y[..., : shape[-2] // 2, : shape[-1] // 2] = 2
    return y


def batch_for(label):
    image = torch.randn(label.shape[0], 1, *label.shape[1:])
    return Batch(image=image, label=label, step=10, total_steps=10)


LAYOUTS = {  # teacher and student spatial sizes of low/high/pre_logits, logits
    "same": (((8, 8), (4, 4), (8, 8)), (8, 8), ((8, 8), (4, 4), (8, 8)), (8, 8)),
    "mismatch": (((8, 8), (4, 4), (8, 8)), (8, 8), ((4, 4), (2, 2), (6, 6)), (6, 6)),
    "3d": (((2, 6, 6), (2, 3, 3), (2, 6, 6)), (2, 6, 6), ((1, 4, 4), (1, 2, 2), (2, 4, 4)), (2, 4, 4)),
}


def run(key, layout="mismatch", kind="mixed", s_channels=(3, 5, 4), t_channels=(6, 7, 5)):
    t_sizes, t_logits, s_sizes, s_logits = LAYOUTS[layout]
    method = build(key, s_channels, t_channels)
    teacher = net_outputs(t_channels, t_sizes, t_logits, seed=1)
    student = net_outputs(s_channels, s_sizes, s_logits, seed=2)
    batch = batch_for(labels(t_logits, kind))
    return method, student, teacher, batch, method(student, teacher, batch)


def test_registry_names_and_descriptions():
    names = list_methods()
    for name in NAMES + ["none", "compose"]:
        assert name in names
        description = METHODS.get(name).description
        assert description and "\n" not in description and len(description) < 120


def test_unknown_parameter_names_the_allowed_ones():
    with pytest.raises(ConfigError, match=r"'tau'.*allowed: T, weight"):
        create_method("kd", tau=1)


def test_bad_options_raise_config_errors():
    with pytest.raises(ConfigError, match="pmd, imd, rad"):
        create_method("emkd", parts=["pmd", "xyz"])
    with pytest.raises(ConfigError, match="kernel"):
        create_method("pa", pool={"size": 3})
    with pytest.raises(ConfigError, match="hinge"):
        create_method("skd", adversarial="lsgan")


def test_methods_build_without_roles_but_say_so_when_run():
    """A grid is validated by building methods without roles; running one needs them."""
    method = create_method("compose", methods=["kd", "fitnet", "cirkd", "emkd"])
    assert set(method.taps) == {"pre_logits", "low", "high"}
    teacher = net_outputs((6, 7, 5), LAYOUTS["same"][0], (8, 8))
    student = net_outputs((3, 5, 4), LAYOUTS["same"][0], (8, 8))
    with pytest.raises(KdbenchError, match="student_roles"):
        method(student, teacher, batch_for(labels((8, 8))))


def test_features_must_match_their_declared_channels():
    for key in ("fitnet", "cirkd"):
        method = build(key, s_channels=(3, 5, 2))  # the student's pre_logits really has 4 channels
        _, student, teacher, batch, _ = run(key)
        with pytest.raises(KdbenchError, match="'pre_logits' feature has 4 channels.*declares 2"):
            method(student, teacher, batch)


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("layout", ["mismatch", "3d"])
def test_gradients_reach_student_and_adapters_never_teacher(key, layout):
    method, student, teacher, batch, terms = run(key, layout)
    assert terms and all(torch.isfinite(torch.as_tensor(v)) for v in terms.values())
    sum(terms.values()).backward()
    student_grads = [student.logits.grad] + [f.grad for f in student.features.values()]
    assert any(g is not None and g.abs().sum() > 0 for g in student_grads)
    assert teacher.logits.grad is None and all(f.grad is None for f in teacher.features.values())
    for p in method.trainable_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    taps = set(method.taps)
    for role, f in student.features.items():
        if role not in taps:
            assert f.grad is None


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("layout", ["same", "3d"])
def test_zero_when_student_equals_teacher(key, layout):
    t_sizes, t_logits, _, _ = LAYOUTS[layout]
    channels = (4, 4, 4)
    method = build(key, channels, channels)
    with torch.no_grad():  # adapters as identities
        for name, p in method.named_parameters():
            if "adapters" in name:
                p.copy_(torch.eye(4).view(4, 4, 1, 1))
    teacher = net_outputs(channels, t_sizes, t_logits, grad=False)
    student = Outputs(teacher.logits.clone(), {k: v.clone() for k, v in teacher.features.items()})
    with torch.no_grad():
        terms = method(student, teacher, batch_for(labels(t_logits)))
    for name in CONFIGS[key][1]:
        assert float(terms[name]) == pytest.approx(0.0, abs=1e-6), name
    assert sum(float(v) for v in terms.values()) == pytest.approx(
        sum(float(v) for k, v in terms.items() if k not in CONFIGS[key][1]))


@pytest.mark.parametrize("key", list(CONFIGS))
@pytest.mark.parametrize("kind", ["fg", "bg"])
def test_single_class_label_maps_give_finite_losses(key, kind):
    for layout in ("mismatch", "3d"):
        *_, terms = run(key, layout, kind)
        assert all(math.isfinite(float(v)) for v in terms.values())


def test_ignored_pixels_are_left_out():
    method, student, teacher, _, _ = run("kd", "same")
    y = labels((8, 8))
    y_ignored = y.clone()
    y_ignored[:, :, 4:] = 255
    student.logits.data[:, :, :, 4:] = 100.0  # garbage where ignored
    full = method(student, teacher, Batch(torch.zeros(2, 1, 8, 8), y_ignored, ignore_index=255))["kd"]
    left = Outputs(student.logits[..., :4], {})
    ref = method(left, Outputs(teacher.logits[..., :4], {}), Batch(torch.zeros(2, 1, 8, 4), y[..., :4]))["kd"]
    assert float(full) == pytest.approx(float(ref), rel=1e-6)


def test_taps_follow_hyper_parameters():
    assert build("kd").taps == ()
    assert create_method("emkd", parts=["pmd"]).taps == ()
    assert create_method("emkd", parts=["pmd", "rad"]).taps == ("low", "high")
    assert create_method("cwd").taps == () and create_method("cwd", features=True).taps == ("pre_logits",)
    assert create_method("at", layers=["high"]).taps == ("high",)
    assert create_method("cirkd").taps == ("pre_logits",)


def test_compose_sums_its_parts_and_prefixes_labels():
    method, student, teacher, batch, terms = run("compose")
    assert set(terms) == {"kd.kd", "at.at", "fitnet.fitnet"}
    kd = create_method("kd")(student, teacher, batch)["kd"]
    at = create_method("at", weight=10.0)(student, teacher, batch)["at"]
    assert float(terms["kd.kd"]) == pytest.approx(float(kd))
    assert float(terms["at.at"]) == pytest.approx(float(at))
    assert len(list(method.trainable_parameters())) == 1  # fitnet's adapter


def test_skd_discriminator_has_its_own_optimiser():
    method, student, teacher, batch, terms = run("skd")
    assert set(terms) == {"pi", "pa", "adv"}
    assert list(method.trainable_parameters()) == []
    sum(terms.values()).backward()
    before = [p.detach().clone() for p in method.discriminator.parameters()]
    student.logits.grad = None
    stats = method.after_step(student, teacher, batch)
    assert math.isfinite(stats["disc"])
    assert student.logits.grad is None  # the critic's step never reaches the student
    assert any(not torch.equal(a, p) for a, p in zip(before, method.discriminator.parameters()))
    hinge = create_method("skd", adversarial="hinge", student_roles=roles((3, 5, 4)), teacher_roles=roles((6, 7, 5)))
    hinge(student, teacher, batch)
    assert math.isfinite(hinge.after_step(student, teacher, batch)["disc"])


def test_skd_discriminator_runs_on_3d_maps():
    method, student, teacher, batch, terms = run("skd", "3d")
    sum(terms.values()).backward()
    assert math.isfinite(method.after_step(student, teacher, batch)["disc"])


def test_cirkd_memory_waits_for_full_queues():
    method = create_method("cirkd", student_roles=roles((3, 5, 4)), teacher_roles=roles((6, 7, 5)),
                           num_classes=K, pixel_memory=24, pixel_update=4, region_memory=3)
    t_sizes, t_logits, s_sizes, s_logits = LAYOUTS["mismatch"]
    history = []
    for step in range(4):
        teacher = net_outputs((6, 7, 5), t_sizes, t_logits, seed=10 + step)
        student = net_outputs((3, 5, 4), s_sizes, s_logits, seed=20 + step)
        terms = method(student, teacher, batch_for(labels(t_logits)))
        history.append((float(terms["pixel_mem"]), float(terms["region_mem"])))
    # two images a step: 2 regions and 8 pixels per class; regions full after step 2, pixels after step 3
    assert history[0] == (0.0, 0.0)
    assert history[1][0] == 0.0 and history[1][1] > 0
    assert history[2][0] > 0 and history[3][0] > 0
    assert method.region_count.tolist() == [8, 8, 8] and method.pixel_count.tolist() == [32, 32, 32]
    norms = method.pixel_queue.norm(dim=2)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)  # only real, normalised features


def test_cirkd_queue_does_not_grow_in_eval_mode():
    method, student, teacher, batch, _ = run("cirkd")
    counts = method.pixel_count.clone()
    method.eval()
    method(student, teacher, batch)
    assert torch.equal(method.pixel_count, counts)


def test_dkd_warmup_and_binary_case():
    method, student, teacher, _, _ = run("dkd", "same")
    y = labels((8, 8))
    at = lambda step: method(student, teacher, Batch(torch.zeros(2, 1, 8, 8), y, step=step, total_steps=100))
    full = at(100)
    assert float(at(0)["tckd"]) == 0.0
    assert float(at(10)["tckd"]) == pytest.approx(0.5 * float(full["tckd"]))
    assert float(at(20)["nckd"]) == pytest.approx(float(full["nckd"]))
    binary = create_method("dkd", num_classes=2)
    z_s, z_t = torch.randn(2, 2, 8, 8), torch.randn(2, 2, 8, 8)
    terms = binary(Outputs(z_s), Outputs(z_t), Batch(torch.zeros(2, 1, 8, 8), y.clamp(max=1), step=1, total_steps=1))
    assert float(terms["nckd"]) == 0.0 and float(terms["tckd"]) > 0


def test_emkd_parts_switch_terms():
    s, t = roles((3, 5, 4)), roles((6, 7, 5))
    _, student, teacher, batch, full = run("emkd")
    for parts in (["pmd"], ["imd"], ["rad"], ["pmd", "rad"], ["imd", "rad"]):
        terms = create_method("emkd", parts=parts, student_roles=s, teacher_roles=t, num_classes=K)(
            student, teacher, batch)
        assert set(terms) == set(parts)
        for part in parts:
            assert float(terms[part]) == pytest.approx(float(full[part]))


def test_method_pages():
    pages = all_method_pages()
    assert set(pages) == {"index.md"} | {f"{n}.md" for n in list_methods()}
    page = method_page("emkd")
    assert page.startswith("# `emkd`")
    for key, value in method_params("emkd").items():
        assert f"| `{key}` |" in page
    assert "`low`, `high`" in page and "parts: [pmd, rad]" in page
    assert "Qin et al." in page
    for name in NAMES:
        assert "## Hyper-parameters" in pages[f"{name}.md"]
        assert yaml.safe_load(pages[f"{name}.md"].split("```yaml\n")[1].split("```")[0])["methods"]


def test_grid_files_name_registered_methods():
    from kdbench.benchmark.grid import load_grid
    from kdbench.leaderboards.paper import paper_results

    tables = Path(__file__).resolve().parents[1] / "tables"
    everything = load_grid(tables / "all_methods.yaml")
    assert {m.name for m in everything.methods} == set(list_methods())
    table3 = load_grid(tables / "table3.yaml")
    rows = paper_results().query("paper == 'emkd_tmi2021' and table == 'III'")
    assert {m.label for m in table3.methods} | {"teacher"} == set(rows["method"])
    assert {"raunet": "RA-UNet", "enet": "ENet"}.items() <= table3.leaderboard.reproduces.names.items()
