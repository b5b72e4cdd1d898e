"""The judge's metrics (:mod:`deeplab.callbacks.trainability`): a module of its own, with no imports, so
``search.py --help`` needs no torch."""

__all__ = ["METRICS"]

#: test_error (seed 002's code), train_error, either (seed 002's prose: "either train or test")
METRICS = ("test_error", "train_error", "either")
