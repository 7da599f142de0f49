"""The ``Engine`` facade: container lifecycle and the state machine's callbacks, exits,
reconciliation; thin facades over the stores below.
"""
