"""REE Daily: the daily rare-earth news digest engine."""

__version__ = "0.1.0"
