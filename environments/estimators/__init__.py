"""The estimators environment."""
