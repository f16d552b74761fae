"""Lockstep groups: the students of one teacher forward.

Every student of a (teacher source, dataset, fold, seed, recipe) sees the same batches with
the same augmentation: the batch order and the augmentation draws come from the seed and the
epoch alone (:func:`~kdbench.benchmark.train.train_models`).  Such students form a lockstep
group, trained in one process: each batch is loaded and augmented once, the teacher runs once
with the union of the methods' feature taps, and each student takes its own step with its own
method, optimiser and random stream, so that its result equals training it alone.  A table
with M methods thus pays for one teacher forward per batch instead of M.

Each student keeps its own job, directory, results, checkpoint and resume; claims, workers and
Slurm see a group as one unit of work (:func:`lockstep_units`).  None of kdbench's methods runs
the teacher itself or makes the teacher's output depend on the student (PLC-KD's team depends on
the label, which every member shares), so every method can share.  3D students train alone for
now: their jobs also profile memory (``memory.json``) on copies of the networks, which draws from
the random stream that the lockstep loop keeps per student.
"""

from __future__ import annotations

import json

LOCKSTEP_MAX = 12
"""Most students trained together by default (``kdbench run --lockstep N``; 1 trains each alone)."""
SHARED = ("dataset", "split", "seed", "train", "teacher")
"""What the students of a group have in common: data, fold and split, seed, recipe, teacher source."""


def lockstep_key(job) -> str | None:
    """The group a job can train in, or ``None`` when it trains alone (not a 2D student)."""
    config = job.config
    if job.kind != "student" or (config.get("volume") or {}).get("dims", 2) == 3:
        return None
    return json.dumps({k: config.get(k) for k in SHARED}, sort_keys=True, default=str)


def lockstep_units(jobs: list, most: int = LOCKSTEP_MAX) -> list[list]:
    """``jobs`` as units of work, in the order of each unit's first job: lockstep groups of at
    most ``most`` students (:func:`lockstep_key`), and every other job alone."""
    units: list[list] = []
    open_: dict[str, list] = {}
    for job in jobs:
        key = lockstep_key(job) if most > 1 else None
        if key is None:
            units.append([job])
            continue
        group = open_.get(key)
        if group is None or len(group) >= most:
            group = open_[key] = []
            units.append(group)
        group.append(job)
    return units
