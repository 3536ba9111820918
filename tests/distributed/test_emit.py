"""`plan MODEL ... --emit-config DIR` through the real CLI: files, plan.json's distributed block, launch.sh."""
from __future__ import annotations

import json
import subprocess

from backend.distributed.validate import validate_config
from planner.cli import main


def test_emit_config_for_70b_full_finetune(tmp_path, capsys):
    out = tmp_path / "launch"
    assert main(["llama3-70b", "--mode", "full", "--emit-config", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)  # still one JSON object on stdout
    rec = result["recommendation"]
    plan = json.loads((out / "plan.json").read_text())
    dist = plan["distributed"]
    assert dist["strategy"] == rec["strategy"] == "fsdp"
    assert dist["per_gpu_bytes"] == rec["per_gpu_bytes"] and dist["num_processes"] == rec["gpu_count"]
    assert dist["num_machines"] == rec["machines"] and dist["instance_type"] == rec["instance_type"]
    assert plan["job"]["mode"] == "full" and plan["training"]["model"] == "llama3-70b"
    assert validate_config(out / "accelerate.yaml").num_processes == rec["gpu_count"]
    assert validate_config(out / "deepspeed" / "accelerate.yaml").plugin["zero_stage"] == 3
    script = (out / "launch.sh").read_text()
    assert f"--config_file {out.resolve()}/accelerate.yaml" in script and "-m backend.train --plan" in script
    assert "wrote fsdp launch files" in captured.err
    # launch.sh refuses to start a multi-machine job without its rank and the main address
    run = subprocess.run(["bash", str(out / "launch.sh")], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode != 0 and "MACHINE_RANK" in run.stderr


def test_emit_config_text_output_names_the_command(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["llama3-70b", "--mode", "qlora", "--seq-len", "4096", "--batch-size", "3",
                 "--emit-config", str(out), "--no-pricing"]) == 2
    assert "drop --no-pricing" in capsys.readouterr().err
    assert main(["llama3-70b", "--mode", "qlora", "--seq-len", "4096", "--batch-size", "3", "--emit-config", str(out)]) == 0
    text = capsys.readouterr().out
    assert "fsdp-qlora on 2 GPU(s) x 1 machine(s)" in text
    assert f"launch: accelerate launch --config_file {out.resolve()}/accelerate.yaml -m backend.train" in text
    assert json.loads((out / "plan.json").read_text())["distributed"]["bnb_4bit_quant_storage"] == "bfloat16"
