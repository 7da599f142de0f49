"""Diagrams of the lifecycle machine and of one container's history.
"""
