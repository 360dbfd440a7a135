"""Embedding: frozen pathology encoders turn H&E patches into vectors.

Importing this package loads nothing heavy. The encoder registry lives in
:mod:`tmescope.embed.registry` (one file per model family under ``encoders/``); import it, or
the modules that need torch, where they are used.
"""
