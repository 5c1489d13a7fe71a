"""Small neural models: melody transformer, harmony and groove predictors, their checkpoints."""
