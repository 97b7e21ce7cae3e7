"""Held-out diagnostics of a trained hybrid skill policy, on demos rather than rollouts.

:mod:`.held_out` replays an agent's validation episodes through its components;
:mod:`.pose_errors` (``reinforcegen pose-errors``) measures the initiation pose
predictor along the connect phase, :mod:`.termination_check` (``reinforcegen
term-check``) the termination classifier's firing rates on demos and negatives.
"""
