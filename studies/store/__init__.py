"""What is on disk and in MLflow: the results layout, the one results reader, the MLflow
tracker and its backlog, and the lease that makes one driver per study."""
