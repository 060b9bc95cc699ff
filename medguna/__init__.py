"""medguna: hyperparameter studies of MedUnA (arXiv 2409.02729) on Ray Tune + Optuna."""

__version__ = "0.1.0"
