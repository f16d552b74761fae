"""The three source papers' published results (``data/paper_results.csv``).

Sources: Qin et al., "Efficient Medical Image Segmentation Based on Knowledge
Distillation", IEEE TMI 40(12), 2021 (``emkd_tmi2021``); Wang et al., PLC-KD, MICCAI
2024 (``plckd_miccai2024``); Noothout et al., "Knowledge distillation with ensembles of
convolutional neural networks for medical image segmentation", J. Med. Imaging 9(5),
2022 (``ensemblekd_jmi2022``).  One row per published number; see the columns in
``docs/leaderboards.md``.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.resources import files

import pandas as pd


@lru_cache(maxsize=1)
def paper_results() -> pd.DataFrame:
    """All published numbers, one row each (paper, table, dataset, target, teacher, student,
    method, metric, value, spread)."""
    with files("kdbench.leaderboards").joinpath("data/paper_results.csv").open() as fh:
        return pd.read_csv(fh, dtype={"table": str}, keep_default_na=False, na_values={"value": [""], "spread": [""]})


def paper_tables() -> set[tuple[str, str]]:
    """The (paper, table) pairs available."""
    df = paper_results()
    return set(zip(df["paper"], df["table"]))
