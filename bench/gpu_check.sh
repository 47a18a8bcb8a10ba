#!/usr/bin/env bash
# Every GPU check in one go (one short lease): the training-loop check, then gptcore vs transformers on GPT-2 small.
set -u
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 bench/gpu_check.py "$@"
GPT2="--device cuda --layers 12 --dims 768 --heads 12 --seq 1024 --batch 16 --vocab 50257 --precisions bf16 --steps 30 --warmup 10"
python3 bench/bench_train.py $GPT2
python3 bench/bench_train.py $GPT2 --compile
