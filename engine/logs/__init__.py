"""Container logs: conmon's k8s-file records, their files and rotation, seeking, options.
"""
