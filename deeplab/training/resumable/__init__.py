"""Stopping and resuming a run exactly: checkpoints, signals, the resume contract, Lightning's privates."""
