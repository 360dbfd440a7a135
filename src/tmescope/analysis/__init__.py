"""Spatial statistics of TME populations: neighbourhood enrichment, co-occurrence, cross-correlation; squidpy where it fits."""
