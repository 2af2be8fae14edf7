"""Extra benchmark volumes with a dense truth: abdominal CT and MR with organ labels (TotalSegmentator).

- ``abdomen``: the 3 mm abdomen/pelvis CT ``example_ct.nii.gz`` shipped in the ``totalsegmentator``
  sdist (``tests/reference_files``, only in the sdist, not in the wheel) and its multilabel
  segmentation ``example_seg_fast_force_split.nii.gz``, made by the package's own
  ``tests/update_test_files.sh`` with ``TotalSegmentator -i example_ct.nii.gz --fast --ml -fs``;
  the script asks for this file (unlike the other, smaller references) to be checked by eye. The labels
  are therefore the output of a published, strong model (TotalSegmentator 3 mm "fast" model,
  Wasserthal et al., Radiol. Artif. Intell. 2023), not a manual delineation.
- Licence: the sdist ships one LICENSE (Apache-2.0) covering the repository; the test files carry
  no separate licence and the scan's origin is not stated (the TotalSegmentator dataset is CC BY 4.0).
- ``abdomen-mr``: the abdominal MR ``example_mr_sm.nii.gz`` (3 mm, only 20 slices: the smallest
  volume here; int16 signal, no unit) in the same sdist and ``example_seg_mr.nii.gz``, made by
  ``TotalSegmentator -i example_mr_sm.nii.gz -ta total_mr --ml`` in the same script (its field of
  view is "too small for manual inspection", the script says). Model labels again, same licence.
  Added after engine v2.1 was fixed (prior weight, warm-up), never tuned on. No other 3D volume
  with dense labels of a new modality (EM, MR, membrane stain, micro-CT) was found inside a
  package on PyPI, npm or Debian (searched 2026-12-02: stardist, mskt, pyradiomics, mirp, spam,
  torch-em, micro-sam, cellpose, torchio, medpy and others ship none, ship labels without their
  image, or download at run time).

- ``abdomen-organs`` and ``abdomen-mr-organs``: the same two volumes, cropped as above, with liver,
  spleen and kidneys (both) as three classes and everything else as background (``ORGANS``): the
  task of radiologists measuring organ volumes, where liver and spleen differ by a few tens of HU.
  Added 2026-12-05 after engine v2.3 was fixed, never tuned on.

The ~60 TotalSegmentator classes present are grouped into four tissue classes (``GROUPS``);
the few remaining labelled structures (vessels, lung bases, spinal cord, prostate: ~1.3 % of the
voxels here) join the background, which in TotalSegmentator is already "everything unlabelled" (fat,
skin, air, other soft tissue). The sdist is read with :mod:`tarfile`; nothing is installed.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from .data import CACHE, Dataset, _nifti_zyx, crop, truth_box, wheel

TOTALSEG = "totalsegmentator==2.18.0"
TOTALSEG_REFS = "totalsegmentator-2.18.0/tests/reference_files/{}.nii.gz"
# TotalSegmentator "total" class ids (totalsegmentator/map_to_binary.py) -> benchmark class.
GROUPS = {
    1: (1, 2, 3, 4, 5, 7, 8, 9, 23, 24),  # spleen, kidneys, gallbladder, liver, pancreas, adrenals, cysts
    2: (6, 18, 19, 20, 21),  # stomach, small bowel, duodenum, colon, urinary bladder
    3: (*range(25, 51), *range(69, 79), *range(91, 118)),  # vertebrae, sacrum, limb/girdle bones, ribs
    4: range(80, 90),  # gluteus maximus/medius/minimus, autochthon, iliopsoas
}
ABDOMEN_CLASSES = ("background", "solid organs", "bowel and bladder", "bone", "muscle")
# TotalSegmentator "total_mr" class ids -> benchmark class (its MR task has fewer, coarser classes).
MR_GROUPS = {
    1: (1, 2, 3, 4, 5, 7, 8, 9),  # spleen, kidneys, gallbladder, liver, pancreas, adrenals
    2: (6, 13, 14, 15, 16),  # stomach, small bowel, duodenum, colon, urinary bladder
    3: (18, 19, 20, 21),  # sacrum, vertebrae, intervertebral discs, spinal cord
    4: range(40, 50),  # gluteal muscles, autochthon, iliopsoas
}
MR_CLASSES = ("background", "solid organs", "bowel and bladder", "spine", "muscle")
# The radiologists' task: liver, spleen and kidneys apart (same ids in "total" and "total_mr").
ORGANS = {1: (5,), 2: (1,), 3: (2, 3)}
ORGAN_CLASSES = ("background", "liver", "spleen", "kidneys")


def _tar_member(sdist_path: Path, member: str) -> bytes:
    with tarfile.open(sdist_path) as archive:
        return archive.extractfile(member).read()


def load_abdomen(cache: Path = CACHE) -> Dataset:
    """TotalSegmentator's example abdomen/pelvis CT (HU, 3 mm) with truth grouped as ``GROUPS``."""
    return _totalseg("abdomen", "example_ct", "example_seg_fast_force_split", GROUPS, ABDOMEN_CLASSES, cache)


def load_abdomen_mr(cache: Path = CACHE) -> Dataset:
    """TotalSegmentator's example abdominal MR (3 mm, 20 slices) with truth grouped as ``MR_GROUPS``."""
    return _totalseg("abdomen-mr", "example_mr_sm", "example_seg_mr", MR_GROUPS, MR_CLASSES, cache)


def load_abdomen_organs(cache: Path = CACHE) -> Dataset:
    """The ``abdomen`` CT with liver, spleen and kidneys as classes (``ORGANS``), in the same box."""
    return _totalseg("abdomen-organs", "example_ct", "example_seg_fast_force_split", ORGANS, ORGAN_CLASSES,
                     cache, box=GROUPS)


def load_abdomen_mr_organs(cache: Path = CACHE) -> Dataset:
    """The ``abdomen-mr`` MR with liver, spleen and kidneys as classes (``ORGANS``), in the same box."""
    return _totalseg("abdomen-mr-organs", "example_mr_sm", "example_seg_mr", ORGANS, ORGAN_CLASSES, cache,
                     box=MR_GROUPS)


def _totalseg(name, image_member, labels_member, groups, class_names, cache, box=None) -> Dataset:
    """The volume with its labels grouped as ``groups``; cropped to the labels of ``box`` (groups too)
    plus a margin when given (else :func:`.data.load` crops it to its own labels)."""
    path = wheel(TOTALSEG, cache, sdist=True)
    image, spacing = _nifti_zyx(_tar_member(path, TOTALSEG_REFS.format(image_member)))
    labels = np.asarray(_nifti_zyx(_tar_member(path, TOTALSEG_REFS.format(labels_member)))[0], np.uint8)
    source = f"{TOTALSEG} sdist, {TOTALSEG_REFS.format('{' + image_member + ',' + labels_member + '}')}"
    dataset = Dataset(name, np.asarray(image), _grouped(labels, groups), spacing, class_names, source)
    return dataset if box is None else crop(dataset, truth_box(_grouped(labels, box)))


def _grouped(labels: np.ndarray, groups: dict) -> np.ndarray:
    lookup = np.zeros(256, np.uint8)
    for group, ids in groups.items():
        lookup[list(ids)] = group
    return lookup[labels]
