"""Drivers: one module per outside thing (runc, conmon, netlink, nft, mounts, users...).

They know nothing of the state machine.
"""
