"""gptforge Prefect flows: one module per stage, plus the CLI and the local stack."""
