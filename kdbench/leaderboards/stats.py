"""Significance of a leaderboard row against the student trained alone.

Noothout et al. (J. Med. Imaging 9(5), 2022) compare each distilled network with the same
network trained alone by a two-sided paired Wilcoxon signed-rank test over the test cases.
:func:`wilcoxon_vs_baseline` does that with :func:`scipy.stats.wilcoxon`, pairing each
case of a row with the same case of the baseline in the same (fold, seed) run;
:func:`holm` adjusts a table's p-values for the number of rows compared (Holm 1979);
:func:`significance_mark` turns an adjusted p-value and the direction into the mark shown
beside a cell.  See ``docs/leaderboards.md``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import wilcoxon

PAIR_KEYS = ["fold", "seed", "case_id"]
"""A case is paired with the same case of the same (fold, seed) run."""
MIN_NONZERO = 6
"""Fewest non-zero paired differences tested: with 5 or fewer, the exact two-sided p-value is
at least 2/2⁵ = 0.0625, so no difference could ever be called significant at 0.05."""
LEVELS = ((0.01, "**"), (0.05, "*"))
"""Holm-adjusted p below each level → its mark."""
TOO_FEW = "too few cases"
IDENTICAL = "identical"


def wilcoxon_vs_baseline(values: pd.DataFrame, baseline: pd.DataFrame) -> dict:
    """Two-sided paired Wilcoxon signed-rank test of ``values`` against ``baseline``.

    Both are per-case results of one target and metric (columns ``fold, seed, case_id,
    value``).  Cases are paired on (fold, seed, case_id); a pair is kept when both values are
    finite.  The test runs on the differences ``values − baseline`` with scipy's defaults
    (zero differences dropped, exact distribution for small samples without ties).

    Returns ``{"p", "pairs", "nonzero", "median_diff", "note"}``:

    * fewer than 2 pairs, or fewer than :data:`MIN_NONZERO` non-zero differences (but not
      all zero): ``p`` is NaN, ``note`` ``"too few cases"``;
    * 2 or more pairs, every difference zero: ``p`` is 1.0 (no evidence of any difference; the
      value scipy returns too, after a 0/0 warning), ``note`` ``"identical"``;
    * otherwise scipy's p-value and ``note`` None.

    ``median_diff`` is the median paired difference (NaN without pairs); its sign is the
    direction of the mark.
    """
    pairs = values[PAIR_KEYS + ["value"]].merge(baseline[PAIR_KEYS + ["value"]], on=PAIR_KEYS,
                                                suffixes=("", "_baseline"))
    a = pairs["value"].to_numpy(float)
    b = pairs["value_baseline"].to_numpy(float)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    nonzero = int(np.count_nonzero(diff))
    out = {"p": math.nan, "pairs": int(diff.size), "nonzero": nonzero,
           "median_diff": float(np.median(diff)) if diff.size else math.nan, "note": TOO_FEW}
    if diff.size < 2:
        return out
    if nonzero == 0:
        return {**out, "p": 1.0, "note": IDENTICAL}
    if nonzero < MIN_NONZERO:
        return out
    return {**out, "p": float(wilcoxon(diff).pvalue), "note": None}


def holm(pvalues) -> np.ndarray:
    """Holm–Bonferroni step-down adjusted p-values (Holm, Scand. J. Statist. 6, 1979).

    With the m finite p-values sorted ascending, p₍ᵢ₎ becomes max over j ≤ i of
    min(1, (m − j + 1)·p₍ⱼ₎), so a row is significant at α after adjustment exactly when
    Holm's procedure rejects it at family-wise level α.  NaNs (rows not tested) are left
    out of m and stay NaN.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, math.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    out[order] = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    return out


def significance_mark(p_holm: float, median_diff: float) -> str:
    """The mark beside a cell: ``**`` for p_holm < 0.01, ``*`` for p_holm < 0.05, then ↑ when
    the median paired difference is positive (the row's values are higher than the
    baseline's) or ↓ when negative; ``""`` when not significant or not tested."""
    if not np.isfinite(p_holm):
        return ""
    stars = next((mark for level, mark in LEVELS if p_holm < level), "")
    if not stars:
        return ""
    return stars + ("↑" if median_diff > 0 else "↓" if median_diff < 0 else "")
