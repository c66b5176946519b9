"""Training: the float models (one file per architecture, fake-quantised where the integer engine
rounds), their export to integer models, the training loop, its data and its recipes."""
