"""The spec a researcher writes: pydantic models, loading, dotted paths and arms, secrets.

The lowest layer of studies/: pydantic and yaml only (no torch, Ray or MLflow).
"""
