"""Evaluation: rollouts, tables, plots and videos."""
