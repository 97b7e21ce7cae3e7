"""Training of the hybrid skill policy's learned components, one module per concern.

* :mod:`.hsp_dataset`: per-stage samples read from the generated demos;
* :mod:`.imitation`: paper Sec. III-C, each component's samples, loss and step;
* :mod:`.loop`: the training run (epochs, resume, TensorBoard) and ``reinforcegen train``;
* :mod:`.checkpoint`: resumable, crash-safe checkpoints keyed by ``(stage, component)``,
  for every training run (imitation now; RL and distillation later);
* :mod:`.diagnostics`: held-out checks of a trained agent (``pose-errors``, ``term-check``).
"""

from __future__ import annotations
