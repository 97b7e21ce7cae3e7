"""Contact tests on MuJoCo's contact arrays, equal to robosuite's.

robosuite's ``check_contact`` and ``_check_grasp`` loop in Python over
``sim.data.contact`` and look up every contact's geom names, for every call.
Here each named geom group becomes a boolean mask over geom ids once per model
(:class:`GeomMasks`), and a test is one compiled pass over the ``ncon`` active
contacts. Membership is decided on the geom's name exactly as robosuite decides
it, so the answers are robosuite's (``test/test_stage_conditions.py`` holds
them equal on scripted-demo states of every task).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
from numba import njit


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
    return bool(_touching_ids(geom1, geom2, mask_1, mask_1 if mask_2 is None else mask_2, mask_2 is None))


@njit(cache=True)
def _touching_ids(geom1: np.ndarray, geom2: np.ndarray, mask_1: np.ndarray, mask_2: np.ndarray, any_geom: bool) -> bool:
    """Whether a contact (geom1[c], geom2[c]) joins group 1 to group 2, either way round (to any geom if ``any_geom``)."""
    for c in range(geom1.shape[0]):
        a, b = geom1[c], geom2[c]
        if any_geom:
            if mask_1[a] or mask_1[b]:
                return True
        elif (mask_1[a] and mask_2[b]) or (mask_2[a] and mask_1[b]):
            return True
    return False


@njit(cache=True)
def near_pairs(xpos: np.ndarray, rbound: np.ndarray, geoms_1: np.ndarray, geoms_2: np.ndarray, limit: float) -> np.ndarray:
    """Geom id pairs (k, 2), one of ``geoms_1`` then one of ``geoms_2`` in that loop order, whose bounding spheres
    (centres ``xpos``, radii ``rbound``) are less than ``limit`` apart, or that have none (radius 0: planes)."""
    out = np.empty((geoms_1.shape[0] * geoms_2.shape[0], 2), dtype=np.int64)
    n = 0
    for a in geoms_1:
        for b in geoms_2:
            ra, rb = rbound[a], rbound[b]
            if ra > 0.0 and rb > 0.0:
                dx, dy, dz = xpos[a, 0] - xpos[b, 0], xpos[a, 1] - xpos[b, 1], xpos[a, 2] - xpos[b, 2]
                if np.sqrt(dx * dx + dy * dy + dz * dz) - ra - rb >= limit:
                    continue
            out[n, 0], out[n, 1] = a, b
            n += 1
    return out[:n]
