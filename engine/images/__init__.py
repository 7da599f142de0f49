"""The image store: root filesystems, safe unpacking, sparse copies.
"""
