"""Training of the hybrid skill policy's learned components.

:mod:`.hsp_dataset` extracts per-stage samples from episodes; :mod:`.bc` runs the
imitation (behaviour cloning) training with resumable checkpoints and the
``reinforcegen train`` command.
"""

from __future__ import annotations
