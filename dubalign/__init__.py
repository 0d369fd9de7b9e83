"""dubalign: align re-recorded dialogue (ADR) to the lips on screen."""

__version__ = "0.1.0"
