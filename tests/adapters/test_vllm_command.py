"""The vLLM serving command: exact text for known inputs, rank rounding, refusals."""
from __future__ import annotations

import shlex

import pytest

from planner.errors import PlannerError
from planner.job import Job
from planner.vllm import VLLM_LORA_RANKS, vllm_command_for, vllm_lora_rank, vllm_serve_command


def test_exact_command_for_three_adapters():
    cmd = vllm_serve_command("meta-llama/Meta-Llama-3-8B", 3, max_lora_rank=16, max_model_len=4096)
    assert cmd.text == (
        "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve meta-llama/Meta-Llama-3-8B --dtype bfloat16 "
        "--max-model-len 4096 --enable-lora --lora-modules adapter1=/path/to/adapter1 "
        "adapter2=/path/to/adapter2 adapter3=/path/to/adapter3 --max-loras 3 --max-lora-rank 16 "
        "--max-cpu-loras 3 --port 8000")
    assert shlex.split(cmd.text)[1:] == list(cmd.argv)
    assert any("replace /path/to/adapterN" in n for n in cmd.notes)


def test_named_adapters_int4_tp_and_fewer_slots():
    cmd = vllm_serve_command("org/model", [("support", "/a/support"), ("sql", "/a/sql dir")], max_lora_rank=12,
                             max_loras=1, precision="int4", tensor_parallel_size=2, port=9000)
    argv = list(cmd.argv)
    assert argv[argv.index("--quantization") + 1] == "bitsandbytes"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--lora-modules") + 1: argv.index("--max-loras")] == ["support=/a/support", "sql=/a/sql dir"]
    assert argv[argv.index("--max-loras") + 1] == "1" and argv[argv.index("--max-cpu-loras") + 1] == "2"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"  # 12 rounds up to a rank vLLM accepts
    assert "'sql=/a/sql dir'" in cmd.text  # quoted for the shell
    assert any("rank 12 rounds up" in n for n in cmd.notes)


@pytest.mark.parametrize("rank,expected", [(1, 1), (2, 8), (8, 8), (9, 16), (64, 64), (300, 320), (512, 512)])
def test_rank_rounding(rank, expected):
    assert vllm_lora_rank(rank) == expected and expected in VLLM_LORA_RANKS


@pytest.mark.parametrize("kwargs,match", [
    (dict(adapters=0, max_lora_rank=16), "at least one adapter"),
    (dict(adapters=2, max_lora_rank=1024), "largest --max-lora-rank"),
    (dict(adapters=2, max_lora_rank=16, max_loras=3), "from 1 to the 2"),
    (dict(adapters=2, max_lora_rank=16, precision="fp4"), "unknown precision"),
])
def test_refusals(kwargs, match):
    with pytest.raises(PlannerError, match=match):
        vllm_serve_command("m", **kwargs)


def test_command_from_a_planned_job():
    job = Job(mode="inference", adapters=4, max_lora_rank=32, seq_len=2048)
    argv = list(vllm_command_for("Qwen/Qwen2.5-7B", job).argv)
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen2.5-7B"]
    assert argv[argv.index("--max-loras") + 1] == "4" and argv[argv.index("--max-lora-rank") + 1] == "32"
    assert argv[argv.index("--max-model-len") + 1] == "2048"
    # --max-lora-rank defaults to --lora-r
    argv = list(vllm_command_for("m", Job(mode="inference", adapters=1, lora_r=8)).argv)
    assert argv[argv.index("--max-lora-rank") + 1] == "8"
    with pytest.raises(PlannerError, match="--adapters N"):
        vllm_command_for("m", Job(mode="inference"))


def test_plan_inference_with_adapters_prints_the_command(capsys):
    import json

    from planner.cli import main

    assert main(["llama3-8b", "--mode", "inference", "--adapters", "2", "--max-lora-rank", "32",
                 "--no-pricing", "--json"]) == 0
    vllm = json.loads(capsys.readouterr().out)["vllm"]
    assert vllm["argv"][:3] == ["vllm", "serve", "meta-llama/Meta-Llama-3-8B"]
    assert vllm["argv"][vllm["argv"].index("--max-lora-rank") + 1] == "32"
    assert main(["llama3-8b", "--mode", "inference", "--adapters", "2", "--no-pricing"]) == 0
    out = capsys.readouterr().out
    assert "Serve it in production with vLLM:" in out
    assert "--lora-modules adapter1=/path/to/adapter1 adapter2=/path/to/adapter2 --max-loras 2" in out
    assert main(["llama3-8b", "--mode", "inference", "--no-pricing", "--json"]) == 0
    assert "vllm" not in json.loads(capsys.readouterr().out)
