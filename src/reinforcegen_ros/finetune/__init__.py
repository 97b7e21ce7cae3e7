"""ReinforceGen fine-tuning (paper Sec. IV): the stages' reset distributions, residual RL of the skills, termination fine-tuning.

* :mod:`reset_bank`: simulator states where stage k's skill begins (Sec. IV-B's reset distribution);
* :mod:`residual_rl`: per-stage residual RL on those states (Sec. IV-B, TD3 with ResFiT's choices);
* :mod:`termination_ft`: fits the success predictors that reject ground-truth terminations (Sec. IV-C;
  the predictors themselves ride with the agent, :mod:`reinforcegen_ros.policies.fine_tuned_termination`);
* :mod:`recipe`: a task's fine-tuning steps (paper Table VI, from config) end to end, ``reinforcegen finetune run``;
* :mod:`config`: the settings, whose defaults are ``config/finetune.yaml``.
"""
