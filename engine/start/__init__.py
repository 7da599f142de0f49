"""The start plan: the (do, undo) steps that make a container run, and their sub-steps.
"""
