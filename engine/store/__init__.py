"""State on disk: the only writer of state files, locks, paths, the container model,
its config, the events journal.
"""
