"""normstudy: hyperparameter studies of normalization methods on Ray Tune + MLflow."""
