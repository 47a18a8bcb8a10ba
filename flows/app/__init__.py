"""The application around the stage flows: the CLI, the local Prefect stack, the served deployments and the demo.

Nothing in ``flows/`` imports from here; the stage flows run the same under any application.
"""
