"""ReinforceGen fine-tuning (paper Sec. IV): the stages' reset distributions and residual RL of the skills.

* :mod:`reset_bank`: simulator states where stage k's skill begins (Sec. IV-B's reset distribution);
* :mod:`residual_rl`: per-stage residual RL on those states (Sec. IV-B, TD3 with ResFiT's choices);
* :mod:`config`: the settings, whose defaults are ``config/finetune.yaml``.
"""
