"""Teachers made of more than one network, and the images their assistants train on.

Building blocks of PLC-KD (Wang et al., MICCAI 2024) and ensemble KD (Noothout et al.,
JMI 2022), usable on their own (see ``docs/teachers.md``):

* :mod:`.fig` — False-pixel Image Generation: pixel queues, synthetic images, ``FIGTransform``;
* :mod:`.bt` — Boundary Transform: the boundary band, BT images, ``BTTransform``;
* :mod:`.correction` — the team's correction ``Y^I → Y^F → Y^B → Y^U`` and the student's KL;
* :mod:`.ensemble` — the mean of K members' softmax, ``EnsembleTeacher``, the student's loss;
* :mod:`.pictures` — the docs' picture of FIG and BT images on the phantom.
"""

from kdbench.teachers.bt import BTTransform, boundary_band, bt_images
from kdbench.teachers.correction import (
    TeamOutput, assistant_correct, plckd_kl, similarity_correct, team_soft_labels)
from kdbench.teachers.ensemble import (
    EnsembleTeacher, ensemble_loss, log_mean_probabilities, mean_probabilities)
from kdbench.teachers.fig import FIGTransform, PixelQueues, fig_images

__all__ = ["BTTransform", "EnsembleTeacher", "FIGTransform", "PixelQueues", "TeamOutput",
           "assistant_correct", "boundary_band", "bt_images", "ensemble_loss", "fig_images",
           "log_mean_probabilities", "mean_probabilities", "plckd_kl", "similarity_correct",
           "team_soft_labels"]
