"""Every deployment `gptforge up` serves: ``<flow>/local`` for each stage flow that exists.

Run as ``python -m flows.deployments`` (the serve process the local stack starts). Work-pool deployments for
shared servers live in ``deploy/prefect.yaml``.
"""
from __future__ import annotations

from prefect import serve
from prefect.flows import Flow


def stage_flows() -> list[Flow]:
    """The stage flows, in recipe order (later stages join this list as they are built)."""
    from flows.build_corpus import build_corpus
    from flows.pretrain import pretrain
    from flows.tokenize_corpus import tokenize
    from flows.train_tokenizer import train_tokenizer

    return [build_corpus, train_tokenizer, tokenize, pretrain]


def local_deployments() -> list:
    return [f.to_deployment(name="local", tags=["gptforge", "local"],
                            description=(f.description or "").strip().split("\n")[0]) for f in stage_flows()]


def main() -> None:
    serve(*local_deployments(), print_starting_message=True)


if __name__ == "__main__":
    main()
