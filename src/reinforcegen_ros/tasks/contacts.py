"""Contact tests on MuJoCo's contact arrays, equal to robosuite's.

robosuite's ``check_contact`` and ``_check_grasp`` loop in Python over
``sim.data.contact`` and look up every contact's geom names, for every call.
Here each named geom group becomes a boolean mask over geom ids once per model
(:class:`GeomMasks`), and a test is one numpy pass over the ``ncon`` active
contacts. Membership is decided on the geom's name exactly as robosuite decides
it, so the answers are robosuite's (``test/test_stage_conditions.py`` holds
them equal on scripted-demo states of every task).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np


class GeomMasks:
    """Boolean masks over the geom ids of one MuJoCo model, one per named geom group, each built once."""

    def __init__(self, sim):
        self.model = sim.model._model  # the compiled model the masks index
        self._names = [sim.model.geom_id2name(i) for i in range(sim.model.ngeom)]
        self._masks: dict[str, np.ndarray] = {}

    def get(self, key: str, geoms: Callable[[], Collection[str]]) -> np.ndarray:
        """The mask of group ``key``: True for geoms whose name is in ``geoms()`` (called on first use only)."""
        mask = self._masks.get(key)
        if mask is None:
            names = geoms()
            mask = self._masks[key] = np.array([name in names for name in self._names], dtype=bool)
        return mask


def active_contacts(data) -> tuple[np.ndarray, np.ndarray]:
    """Geom ids (geom1, geom2) of the active contacts of MuJoCo ``data`` (an ``MjData``)."""
    pairs = data.contact.geom[: data.ncon]
    return pairs[:, 0], pairs[:, 1]


def touching(data, mask_1: np.ndarray, mask_2: np.ndarray | None = None) -> bool:
    """robosuite's ``check_contact``: a geom of group 1 touches one of group 2 (any geom when ``mask_2`` is None)."""
    return _touching(*active_contacts(data), mask_1, mask_2)


def grasping(data, pad_masks: Sequence[np.ndarray], object_mask: np.ndarray) -> bool:
    """robosuite's ``_check_grasp`` for one gripper: every finger-pad group touches the object."""
    geom1, geom2 = active_contacts(data)
    return all(_touching(geom1, geom2, pad, object_mask) for pad in pad_masks)


def _touching(geom1: np.ndarray, geom2: np.ndarray, mask_1: np.ndarray, mask_2: np.ndarray | None) -> bool:
    if mask_2 is None:
        return bool(mask_1[geom1].any() or mask_1[geom2].any())
    return bool(np.any((mask_1[geom1] & mask_2[geom2]) | (mask_2[geom1] & mask_1[geom2])))
