"""What one trial needs: datasets, recipes (normlib objects from a config), the training loop,
checkpoints, and the spec checks that need torch. No Ray driver code, no MLflow."""
