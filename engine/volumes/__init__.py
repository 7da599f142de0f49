"""Named volumes.
"""
