"""Real two-process runs on the CPU (gloo) of the tiny model through the one entry script,
launched by ``accelerate launch`` from a generated config (backend.distributed.launch_local)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from backend.distributed import build_launch_config, launch_local, write_launch
from backend.distributed.launch import plan_document
from planner.estimate import estimate
from planner.plan import RunSettings
from tests.tiny import make_tiny_model, memorization_records, write_jsonl

ENV = {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_two_processes(tmp_path, strategy: str, mode: str = "lora"):
    model = make_tiny_model(tmp_path / "tiny")
    data = write_jsonl(tmp_path / "data.jsonl", memorization_records(repeat=2))  # 16 records
    est = estimate(str(model), mode=mode, seq_len=32, batch_size=2)
    cfg = build_launch_config(strategy, 2, 1, est.model.model_type, mode, use_cpu=True, compute_dtype="fp32",
                              entry_args=("--plan", "{dir}/plan.json"), metadata={"per_gpu_bytes": est.total_bytes})
    out = tmp_path / "out"
    plan = plan_document(str(model), est, cfg, RunSettings(model=str(model), dataset=str(data), output_dir=str(out),
                                                           max_steps=3, save_steps=3, logging_steps=1, track=False,
                                                           register=False))
    code = launch_local(cfg, tmp_path / "launch", plan, env=ENV, timeout=240)
    return code, out


def assert_both_ranks_trained_and_one_adapter_saved(out):
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["global_step"] == 3
    assert record["plan"]["distributed"]["num_processes"] == 2
    # the launched strategy and the per-GPU figure planned for it are named in run.json
    assert record["strategy"] == record["plan"]["distributed"]["strategy"] == "data-parallel"
    assert record["predicted_per_gpu_bytes"] == record["plan"]["distributed"]["per_gpu_bytes"]
    ckpt = out / "checkpoints" / "checkpoint-3"
    # Each rank saves its own RNG state: two files means two ranks ran the training loop.
    assert sorted(p.name for p in ckpt.glob("rng_state_*.pth")) == ["rng_state_0.pth", "rng_state_1.pth"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    # 16 records, 2 per rank per step: 2 ranks finish an epoch in 4 steps (one rank would need 8).
    assert state["epoch"] == pytest.approx(3 / 4)
    adapters = [p for p in out.rglob("adapter_model.safetensors") if "checkpoints" not in p.parts]
    assert adapters == [out / "adapter_model.safetensors"]
    from safetensors.torch import load_file
    assert any("lora_A" in k for k in load_file(adapters[0]))


@pytest.mark.slow
def test_two_process_data_parallel_lora(tmp_path):
    code, out = run_two_processes(tmp_path, "data-parallel")
    assert code == 0
    assert_both_ranks_trained_and_one_adapter_saved(out)


PROBE = """
from accelerate import Accelerator
print("DISTRIBUTED_TYPE", Accelerator(cpu=True).state.distributed_type.value)
"""


@pytest.mark.slow
def test_two_process_fsdp(tmp_path):
    # Ask accelerate itself, under the generated FSDP config, whether it turns FSDP on for CPU ranks.
    cfg = build_launch_config("fsdp", 2, 1, "llama", "lora", use_cpu=True, compute_dtype="fp32")
    cfg_dir = tmp_path / "probe"
    cfg_dir.mkdir()
    write_launch(cfg, cfg_dir)
    (cfg_dir / "probe.py").write_text(PROBE)
    probe = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                            str(cfg_dir / "accelerate.yaml"), str(cfg_dir / "probe.py")],
                           capture_output=True, text=True, timeout=120, env={**os.environ, **ENV, "ACCELERATE_USE_CPU": "true"})
    kinds = {line.split()[1] for line in probe.stdout.splitlines() if line.startswith("DISTRIBUTED_TYPE")}
    assert len(kinds) == 1, probe.stdout + probe.stderr
    if kinds != {"FSDP"}:
        pytest.skip(f"accelerate enables FSDP only on GPU-like devices: under the FSDP config two CPU "
                    f"ranks run as {kinds.pop()} with gloo (accelerate/state.py sets FSDP only for MULTI_GPU/"
                    "XPU/NPU/...); the FSDP config itself is checked in test_config.py")
    code, out = run_two_processes(tmp_path, "fsdp")
    assert code == 0
    assert_both_ranks_trained_and_one_adapter_saved(out)
