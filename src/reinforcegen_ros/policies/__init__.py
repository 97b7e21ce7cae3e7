"""Learned components of the Hybrid Skill Policy (ReinforceGen Sec. III-C).

Per stage: an initiation pose predictor, a skill policy and a termination
classifier (:mod:`.hsp` bundles them behind the agent interface the hybrid
executor calls). Importing this package does not import torch; use the
submodules, e.g. ``from reinforcegen_ros.policies.hsp import HybridSkillPolicy``.
"""

from __future__ import annotations
