"""Leaf utilities every other gankit module may use: the user-error type, typed registries and safe file writes.

Nothing in ``gankit.core`` imports another gankit package, so it can never take part in an import circle.
"""
