"""lab: an interactive lab for RLVR on language models."""
__version__ = "0.1.0"
