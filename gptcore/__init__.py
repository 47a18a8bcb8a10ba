"""gptcore: the model library (plain PyTorch, no Prefect)."""
