"""The "Model zoo" documentation page, generated from the model registry.

:func:`zoo_markdown` builds every registered model at its default (paper) configuration
on the ``meta`` device — shapes only, no memory, no weights — counts its parameters and
FLOPs with :mod:`kdbench.models.cost`, and sets EMKD Table II's published numbers
beside them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch import nn

from kdbench.models import MODELS, create_model
from kdbench.models.cost import count_flops, count_params

PAPER_RESULTS = Path(__file__).resolve().parents[1] / "leaderboards" / "data" / "paper_results.csv"

#: EMKD's FLOPs are MACs of a 2×1×384×384 batch (flopco, official code) = FLOPs of one
#: 1×1×384×384 image when a multiply-add counts 2.
EMKD_FLOPS_INPUT = (1, 1, 384, 384)

PAPERS = {
    "emkd_tmi2021": "EMKD (Qin et al., IEEE TMI 2021)",
    "plckd_miccai2024": "PLC-KD (Wang et al., MICCAI 2024)",
    "ensemblekd_jmi2022": "Ensemble KD (Noothout et al., J. Med. Imaging 2022)",
}

#: What a reader needs to know where our network and the published numbers differ.
VOLUME_INPUT = (1, 1, 64, 64, 64)
"""The input at which 3D models are counted (Noothout et al.'s 3D ResNet patch, 64³)."""

NOTES = {
    "raunet": "Ni et al.'s RAUNet (ResNet-34 LinkNet + attention), the network of EMKD's "
              "code; EMKD cites Jin et al.'s 3D RA-UNet.",
    "pspnet": "3×3 fusion conv after the pyramid pooling, as in the PSPNet paper (smp's "
              "PSPNet uses 1×1: 29.8 M).",
    "unetpp": "Base width 48 matches EMKD's 20.6 M (base 32: 9.2 M; base 64: 36.6 M). "
              "EMKD's 620.04 G FLOPs belong to the base-64 network at 384² (this one "
              "gives that number at 512²).",
    "deeplabv3p": "EMKD's count includes the backbone's unused ImageNet classifier "
                  "(2.05 M) and a decoder of two full 3×3 convs where smp has one separable "
                  "(≈1.2 M). Full 3×3 ASPP as in EMKD's code (the paper's separable ASPP: "
                  "41.0 M).",
    "resnet18": "EMKD repeats the grey channel to 3 before the first conv (+0.5 G FLOPs "
                "at 384²).",
    "mobilenetv2": "EMKD's stride pattern: output stride 8 without dilation.",
    "enet": "1×1-conv shortcut in the downsampling bottlenecks (EMKD's code; the paper "
            "zero-pads max-pooled channels, 9.6 k fewer params).",
    "espnet": "p = 2, q = 3; the decoder's ESP module keeps 5 channels when there are "
              "fewer than 5 classes.",
    "transunet": "Position embeddings stored for 224² (the paper) and resampled to the "
                 "input size; ≈105 M as in the paper.",
    "ens-unet": "Fig. 2a in 2D; with ens-resnet and ens-dilated, 2 × (sum) = 7.8 M vs "
                "Table 1's 7.97 M for the ACDC diverse ensemble (4 classes).",
    "ens-resnet": "Fig. 2b in 2D (6 pre-activated residual blocks at 128 channels).",
    "ens-dilated": "Fig. 2c; zero-padded for dense output; 0.09 M (Table 1, ACDC).",
    "tinyunet": "Toy student for quick runs and tests; not from a paper.",
}


def _shape(size: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in size)


def _emkd_table2() -> pd.DataFrame:
    df = pd.read_csv(PAPER_RESULTS, dtype={"table": str})
    return df[(df.paper == "emkd_tmi2021") & (df.table == "II") & (df.method == "none")
              & df.metric.isin(["params_M", "flops_G"])]


def _build(name: str, in_channels: int, device: str) -> nn.Module:
    with torch.device(device):
        return create_model(name, in_channels=in_channels)


def _cost(name: str, input_sizes: list[tuple[int, ...]]) -> tuple[nn.Module, int, list[int]]:
    """The model, its params and its FLOPs at each input size; built on the meta device,
    on the CPU if an operation has no meta kernel."""
    in_channels = input_sizes[0][1]
    try:
        model = _build(name, in_channels, "meta")
        return model, count_params(model), [count_flops(model, s) for s in input_sizes]
    except RuntimeError:  # an op without a meta kernel raises a RuntimeError subclass
        model = _build(name, in_channels, "cpu")
        return model, count_params(model), [count_flops(model, s) for s in input_sizes]


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or pd.isna(value):
        return "—"
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.{digits}f}"


def zoo_markdown(input_size: tuple[int, ...] = (1, 1, 512, 512)) -> str:
    """The "Model zoo" page: one row per registered model with its params at the default
    configuration, FLOPs at ``input_size`` and at EMKD's counting size, EMKD Table II's
    published params/FLOPs, and notes on any mismatch; then every model's feature roles."""
    input_size = tuple(input_size)
    emkd_input = (1, input_size[1], *EMKD_FLOPS_INPUT[2:])
    sizes = [input_size] if input_size == emkd_input else [input_size, emkd_input]
    table2 = _emkd_table2()
    shown = _shape(input_size)
    emkd_size = _shape(sizes[-1])
    lines = [
        "# Model zoo",
        "",
        "Generated from the model registry (`kdbench.models.zoo.zoo_markdown`). Every model "
        "is a plain `nn.Module` returning logits at the input resolution; build one with "
        "`kdbench.create_model(name, in_channels=1, num_classes=2, width=1.0)`.",
        "",
        f"* **Params (M)**: every parameter at the default configuration — width 1 (the "
        f"paper's), {input_size[1]} input channel(s) (we assume the papers' single-channel "
        f"CT slices; EMKD's code repeats the grey channel to 3 for some networks, which "
        f"changes only the first convolution), 2 classes.",
        f"* **FLOPs (G)**: one forward pass of a {shown} input, counted with "
        "`torch.utils.flop_counter.FlopCounterMode`, which counts a multiply-add as "
        "2 FLOPs (papers that report MACs as \"FLOPs\" read half).",
        "* **EMKD Table II** does not state the input size of its FLOPs. Its official code "
        "counts MACs with flopco at 2×1×384×384, which is the same number as our FLOPs of "
        f"one {emkd_size} image: compare that column with the published one.",
        "",
        f"| model | description | paper | params (M) | FLOPs (G) @ {shown} "
        + ("" if len(sizes) == 1 else f"| FLOPs (G) @ {emkd_size} ")
        + "| EMKD params (M) | EMKD FLOPs (G) | notes |",
        "|---|---|---|---:|---:|" + ("" if len(sizes) == 1 else "---:|") + "---:|---:|---|",
    ]
    role_lines = [
        "## Feature roles",
        "",
        "Module paths read by forward hooks (`kdbench.models.FeatureTaps`), with channels "
        "and stride at width 1. `low` is the stem output before the first pooling, `high` "
        "the last encoder feature at stride 8 (EMKD's \"second encoder stage\"; stride 4 "
        "or 1 where a network never reaches 8), `pre_logits` the feature the classifier reads.",
        "",
        "| model | low | high | pre_logits |",
        "|---|---|---|---|",
    ]
    for entry in MODELS.entries():
        name, meta = entry.name, entry.meta
        if meta.get("dims", 2) == 3:  # a volume: the 3D ResNet's 64³ patch (Noothout et al.)
            model, params, flops = _cost(name, [VOLUME_INPUT[:1] + input_size[1:2] + VOLUME_INPUT[2:]])
            note3d = f"3D: FLOPs of a {_shape(VOLUME_INPUT[:1] + input_size[1:2] + VOLUME_INPUT[2:])} patch."
            flops = [*flops, *([float("nan")] * (len(sizes) - 1))]
        else:
            model, params, flops = _cost(name, sizes)
            note3d = ""
        published = {"params_M": None, "flops_G": None}
        if meta.get("paper") == "emkd_tmi2021":
            rows = table2[table2.student == meta.get("paper_name")]
            published.update(dict(zip(rows.metric, rows.value.astype(float))))
        note = f"{note3d} {NOTES.get(name, '')}".strip()
        if published["params_M"]:
            delta = (params / 1e6 - published["params_M"]) / published["params_M"]
            note = f"params {delta:+.1%} vs EMKD. {note}".strip()
        paper = PAPERS.get(meta.get("paper", ""), "—")
        cells = [f"`{name}`", entry.description, paper, _fmt(params / 1e6),
                 *(_fmt(f / 1e9) for f in flops),
                 _fmt(published["params_M"]), _fmt(published["flops_G"]), note]
        lines.append("| " + " | ".join(cells) + " |")
        roles = model.feature_roles
        role_lines.append(f"| `{name}` | " + " | ".join(
            f"`{roles[r].path}` ({roles[r].channels} ch, /{roles[r].stride})"
            for r in ("low", "high", "pre_logits")) + " |")
    return "\n".join(lines + [""] + role_lines) + "\n"
