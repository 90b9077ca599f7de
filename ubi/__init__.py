"""UBI: User Behaviour Intelligence."""

__version__ = "0.1.0"
