"""ReinforceGen: hybrid skill policies, object-centric data generation and RL fine-tuning."""

__version__ = "0.1.0"
