"""Fabric: a data-fabric integration layer from legacy silos to AI scores and back."""

__version__ = "0.1.0"
