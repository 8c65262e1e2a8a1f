"""Planning rewards for the Hand Manipulation Suite (Adroit, gymnasium-robotics)."""
from __future__ import annotations
