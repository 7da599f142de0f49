"""Network definitions and their address leases.
"""
