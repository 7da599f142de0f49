"""Deployment files (a subset of the Compose format): loading, interpolation, model,
normalizing, deploying.
"""
