"""Training-side tools: augmentation and corpus preparation."""
