"""deeplab: what decides whether a deep network trains at all, one command per experiment."""

__version__ = "0.1.0"
