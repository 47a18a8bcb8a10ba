"""gptforge's stage flows: one Prefect flow per stage (and ``pipeline``, ``retrain``), thin wiring over the libraries.

Beside the flows: the data root (``store``), the skeleton every stage shares (``stage``, ``version_lock``), lineage
(``lineage``) and what people read about it (``cards``, ``charts``), where shard tasks run (``runners``), the GPU slot
(``gpu``). The application around them (CLI, local stack, deployments, demo) is ``flows.app``; the demo's inputs are
``flows.demo``.
"""
