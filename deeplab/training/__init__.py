"""Training one run: the LightningModule, the optimizers, fit()."""
