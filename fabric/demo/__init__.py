"""The Brightwave Broadband demo estate: four disagreeing silos plus the hidden truth."""

from fabric.demo.generate import FAULTS, EstateSpec, generate_estate

__all__ = ["FAULTS", "EstateSpec", "generate_estate"]
