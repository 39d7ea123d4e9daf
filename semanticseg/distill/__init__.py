"""Block distillation: data, losses, the training recipe, evaluation."""
