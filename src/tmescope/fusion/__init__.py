"""Fusion: spot graphs, expression and TME-state targets, the GATv2 head and its baselines.

Pure compute on arrays read from the store: nothing here touches files except model
save/load. Importing this package loads no torch; the modules that need it import it.
"""
