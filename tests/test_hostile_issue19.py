"""Issue 19, the CLI side: silently wrong configs refused, the console survives, the data checked is
the data trained. Real files, the CLI in-process or as a real subprocess (stdout closed, /dev/full,
an ASCII console, the light install, a malformed --region)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from planner.cli import main
from planner.errors import PlannerError

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "planner" / "models"
LIGHT = "torch,transformers,peft,trl,accelerate,datasets,fastapi,uvicorn,boto3,botocore,sagemaker,lm_eval"


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def error_line(code: int, err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code != 0 and "Traceback" not in err and len(lines) == 1, err
    return lines[0]


def plan_process(args: list[str], *, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "planner", *args], capture_output=True, text=True, timeout=120,
                          env=full, stdin=subprocess.DEVNULL, **kw)


def config(name: str, **changes) -> dict:
    return {**json.loads((MODELS / f"{name}.json").read_text())["config"], **changes}


# ---- config invariants -----------------------------------------------------------------------------

@pytest.mark.parametrize("base,field", [("mixtral-8x7b", "num_local_experts"), ("mixtral-8x7b", "num_experts_per_tok"),
                                        ("llama3-8b", "num_key_value_heads"), ("llama3-8b", "head_dim")])
def test_a_zero_count_is_refused_not_defaulted(tmp_path, base, field):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config(base, **{field: 0})))
    line = error_line(*run_main([str(path), "--mode", "lora", "--no-pricing"])[::2])
    assert f"{field} is 0" in line


def test_unknown_layer_types_are_refused(tmp_path):
    cfg = config("llama3-8b")
    cfg["layer_types"] = ["full_attention"] * (cfg["num_hidden_layers"] - 1) + ["mystery_attention"]
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    line = error_line(*run_main([str(tmp_path / "config.json"), "--mode", "lora", "--no-pricing"])[::2])
    assert "'mystery_attention'" in line and "full_attention" in line


@pytest.mark.parametrize("qc,shown", [({"quant_method": "gptq", "bits": 4}, "gptq, 4-bit"),
                                      ({"load_in_4bit": True}, "bitsandbytes, 4-bit"),
                                      ({"quant_method": "awq", "bits": 4, "group_size": 128}, "awq, 4-bit")])
def test_a_quantized_checkpoint_is_named_in_a_note(tmp_path, qc, shown):
    (tmp_path / "config.json").write_text(json.dumps(config("llama3-8b", quantization_config=qc)))
    code, out, err = run_main([str(tmp_path / "config.json"), "--mode", "lora", "--no-pricing"])
    assert code == 0
    assert f"quantization_config ({shown})" in out
    code, out, _ = run_main([str(tmp_path / "config.json"), "--mode", "lora", "--no-pricing", "--json"])
    assert any("quantization_config" in n for n in json.loads(out)["notes"])


def test_a_400_digit_integer_in_config_json_is_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": ' + "9" * 400 + "}")
    line = error_line(*run_main([str(tmp_path / "config.json"), "--mode", "lora", "--no-pricing"])[::2])
    assert "hidden_size" in line and "characters" in line and len(line) < 300


# ---- the console ---------------------------------------------------------------------------------

def test_closed_stdout_is_one_line():
    done = subprocess.run(["bash", "-c", f"{sys.executable} -m planner llama3-8b --mode lora --no-pricing >&-"],
                          stderr=subprocess.PIPE, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: stdout is closed" in done.stderr


def test_full_stdout_is_one_line():
    with open("/dev/full", "w") as full:
        done = subprocess.run([sys.executable, "-m", "planner", "llama3-8b", "--mode", "lora", "--no-pricing"],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "error: cannot write the output: No space left on device" in done.stderr


@pytest.mark.parametrize("args", [["llama3-8b", "--mode", "lora"], ["models"],
                                  pytest.param(["prices", "show"], marks=pytest.mark.slow),
                                  ["llama3-8b", "--mode", "inference", "--no-pricing"]])
def test_an_ascii_console_gets_ascii_tables(args):
    done = plan_process(args, env={"PYTHONIOENCODING": "ascii"})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.stdout.isascii() and done.stdout.strip()


@pytest.mark.parametrize("region", ["us-east-1/x", "a b", "../etc", "\u00fcs", ""])
@pytest.mark.parametrize("command", [["jobs", "list"], ["endpoints", "list"], ["registry", "list", "tiny"]])
def test_a_malformed_region_is_one_line(command, region):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
    done = plan_process([*command, "--region", region], env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-600:]
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "region" in done.stderr


def test_the_light_install_writes_launch_files_without_a_crash(tmp_path):
    env = {"PLAN_BLOCK_MODULES": LIGHT,
           "PYTHONPATH": os.pathsep.join((str(ROOT / "tests" / "data" / "hostile" / "blocker"), str(ROOT)))}
    done = plan_process(["llama3-8b", "--mode", "lora", "--emit-config", str(tmp_path / "launch")], env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-600:]
    assert "not validated" in done.stderr and (tmp_path / "launch" / "accelerate.yaml").is_file()


# ---- data checked = data trained -----------------------------------------------------------------

def test_a_duplicated_csv_header_is_refused(tmp_path):
    from backend.data import preflight

    path = tmp_path / "d.csv"
    path.write_text("text,text\nchecked,trained\n")
    with pytest.raises(PlannerError, match="'text' appears more than once"):
        preflight(path)


def test_a_folder_with_two_train_files_is_refused(tmp_path):
    from backend.data import preflight

    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    (tmp_path / "train.csv").write_text("text\nb\n")
    with pytest.raises(PlannerError, match="train.jsonl and train.csv"):
        preflight(tmp_path)


@pytest.mark.parametrize("name,text", [("d.jsonl", '{"text": ' + "9" * 5000 + "}\n"),
                                       ("d.json", '[{"text": ' + "9" * 5000 + "}]")])
def test_a_5000_digit_integer_in_a_record_is_one_line(tmp_path, name, text):
    from backend.data import preflight

    (tmp_path / name).write_text(text)
    with pytest.raises(PlannerError, match="a number too large to read"):
        preflight(tmp_path / name)


@pytest.mark.parametrize("args", [[b"\xff", b"--mode", b"lora"], [b"llama3-8b", b"--mode", b"lora", b"--emit-config", b"\xfe"]])
def test_non_utf8_arguments_are_one_line(tmp_path, args):
    """argv bytes that are not UTF-8 reach Python as surrogates: shown, refused, never a traceback."""
    done = subprocess.run([sys.executable.encode(), b"-m", b"planner", *args], capture_output=True, timeout=120,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    err = done.stderr.decode("utf-8", "replace")
    assert done.returncode == 2 and "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: "), err
    assert list(tmp_path.iterdir()) == []
