"""Evaluation: the Report (clean accuracy, DeepFool rho_2, FGS and epsilon_ref, PGD, AutoAttack at standard threat
models) and the gradient-masking sanity checks behind every figure."""
