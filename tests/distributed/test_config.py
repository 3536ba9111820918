"""Launch configs from plans: exact settings per strategy, and accelerate accepts every one."""
from __future__ import annotations

import json

import pytest

from backend.distributed import build_launch_config, decoder_layer_class, plan_launch, write_launch
from backend.distributed.config import DECODER_LAYER_PREFIX, STRATEGIES, launchable
from backend.distributed.launch import recommended_machine
from backend.distributed.validate import validate_config
from planner.errors import PlannerError
from planner.plan import Strategy


def files(cfg):
    return dict(cfg.files)


@pytest.mark.parametrize("model_type", sorted(DECODER_LAYER_PREFIX))
def test_wrap_class_is_the_one_transformers_keeps_whole(model_type):
    import transformers
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
    assert cls._no_split_modules == [decoder_layer_class(model_type)]


def test_unknown_architecture_falls_back_to_no_split_modules():
    cfg = build_launch_config("fsdp", 2, 1, "olmo9", "full")
    assert "fsdp_transformer_layer_cls_to_wrap" not in files(cfg)["accelerate.yaml"]
    assert any("_no_split_modules" in n for n in cfg.notes)


@pytest.mark.parametrize("name", ["single-gpu", "data-parallel", "fsdp", "fsdp-qlora", "zero3"])
def test_strategy_names_are_planner_plan_strategy_exactly(name):
    assert launchable(name) is Strategy(name)


@pytest.mark.parametrize("call,message", [
    (lambda: launchable("tensor-parallel"), "inference"),
    (lambda: launchable("pipeline"), "unknown strategy 'pipeline'; known: single-gpu, data-parallel"),
    (lambda: launchable("ddp"), "unknown strategy 'ddp'"),  # one vocabulary: no synonyms
    (lambda: build_launch_config("fsdp", 6, 4, "llama", "full"), "evenly"),
    (lambda: build_launch_config("fsdp", 0, 1, "llama", "full"), "positive"),
    (lambda: build_launch_config("fsdp", 2, 1, "llama", "inference"), "served"),
    (lambda: build_launch_config("fsdp", 2, 1, "llama", "full", engine="megatron"), "engine"),
])
def test_bad_requests_are_one_line_errors(call, message):
    with pytest.raises(PlannerError, match=message) as info:
        call()
    assert "\n" not in str(info.value)


def test_fsdp_qlora_settings_follow_the_peft_guide():
    cfg = build_launch_config("fsdp", 2, 1, "llama", "qlora")
    text = files(cfg)["accelerate.yaml"]
    for line in ('distributed_type: "FSDP"', 'mixed_precision: "no"', "fsdp_use_orig_params: false",
                 "fsdp_cpu_ram_efficient_loading: true", "fsdp_sync_module_states: true",
                 'fsdp_sharding_strategy: "FULL_SHARD"', 'fsdp_auto_wrap_policy: "TRANSFORMER_BASED_WRAP"',
                 'fsdp_transformer_layer_cls_to_wrap: "LlamaDecoderLayer"', 'fsdp_state_dict_type: "FULL_STATE_DICT"'):
        assert line in text
    assert cfg.strategy == "fsdp-qlora"
    assert cfg.metadata["bnb_4bit_quant_storage"] == "bfloat16"
    fp16 = build_launch_config("fsdp-qlora", 2, 1, "llama", "qlora", compute_dtype="fp16")
    assert fp16.metadata["bnb_4bit_quant_storage"] == "float32"  # fp16 AMP needs fp32 storage (PEFT guide)


def test_full_fsdp_keeps_orig_params_and_saves_sharded():
    text = files(build_launch_config("fsdp", 8, 1, "qwen2", "full"))["accelerate.yaml"]
    assert "fsdp_use_orig_params: true" in text and 'fsdp_state_dict_type: "SHARDED_STATE_DICT"' in text
    assert 'fsdp_transformer_layer_cls_to_wrap: "Qwen2DecoderLayer"' in text and 'mixed_precision: "bf16"' in text


def test_zero3_json_with_and_without_offload():
    on = json.loads(files(build_launch_config("zero3", 8, 1, "llama", "full", offload=True))["ds_zero3.json"])
    off = json.loads(files(build_launch_config("zero3", 8, 1, "llama", "full"))["ds_zero3.json"])
    assert on["zero_optimization"]["stage"] == 3
    assert on["zero_optimization"]["offload_param"] == {"device": "cpu", "pin_memory": True}
    assert on["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert off["zero_optimization"]["offload_param"] == {"device": "none"}
    assert on["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills these from the plan


def test_single_plan_on_several_gpus_is_data_parallel():
    cfg = build_launch_config("single-gpu", 4, 1, "llama", "lora")
    assert cfg.strategy == "data-parallel" and 'distributed_type: "MULTI_GPU"' in files(cfg)["accelerate.yaml"]


def test_multi_machine_command_takes_rank_and_address_from_the_environment():
    cfg = build_launch_config("fsdp", 16, 2, "llama", "full", entry_args=("--plan", "{dir}/plan.json"))
    assert cfg.processes_per_machine == 8
    assert cfg.shell_command("/x") == (
        'accelerate launch --config_file /x/accelerate.yaml --machine_rank "$MACHINE_RANK" '
        '--main_process_ip "$MAIN_PROCESS_IP" --main_process_port 29500 -m backend.train --plan /x/plan.json')


CASES = [("data-parallel", "lora", 4, 1, None, False), ("fsdp", "full", 16, 2, None, False),
         ("fsdp", "lora", 8, 1, None, True), ("fsdp-qlora", "qlora", 2, 1, None, False),
         ("zero3", "full", 8, 1, None, True), ("fsdp", "qlora", 8, 1, "deepspeed", False),
         ("single-gpu", "qlora", 1, 1, None, False)]


@pytest.mark.parametrize("strategy,mode,n,machines,engine,offload", CASES)
def test_accelerate_loads_every_generated_config(tmp_path, strategy, mode, n, machines, engine, offload):
    cfg = build_launch_config(strategy, n, machines, "llama", mode, engine=engine, offload=offload)
    write_launch(cfg, tmp_path)
    checked = validate_config(tmp_path / "accelerate.yaml")
    assert (checked.num_processes, checked.num_machines) == (n, machines)
    assert checked.distributed_type == {"fsdp": "FSDP", "deepspeed": "DEEPSPEED", None: "MULTI_GPU" if n > 1 else "NO"}[cfg.engine]
    if cfg.engine == "fsdp":
        p = checked.plugin
        assert p["sharding_strategy"] == "FULL_SHARD" and p["transformer_cls_names_to_wrap"] == ["LlamaDecoderLayer"]
        assert p["use_orig_params"] is (mode == "full") and p["cpu_offload"] is offload
        assert p["cpu_ram_efficient_loading"] and p["sync_module_states"]
    if cfg.engine == "deepspeed":
        assert checked.plugin["zero_stage"] == 3
        assert checked.plugin["offload_param_device"] == ("cpu" if offload else "none")


def test_accelerate_rejects_a_broken_config_in_one_line(tmp_path):
    (tmp_path / "accelerate.yaml").write_text("distributed_type: FSDP\nnum_processes: 2\nfsdp_config:\n"
                                              "  fsdp_sharding_strategy: HALF_SHARD\n")
    with pytest.raises(PlannerError, match="accelerate rejects"):
        validate_config(tmp_path / "accelerate.yaml")


def test_70b_full_finetune_plan_launches_fsdp_across_machines(tmp_path, plan_70b_full):
    est, costs = plan_70b_full
    rec = costs.to_dict()["recommendation"]
    cfg = plan_launch(est, recommended_machine(costs))
    assert cfg.strategy == rec["strategy"] == "fsdp"
    assert (cfg.num_processes, cfg.num_machines) == (rec["gpu_count"], rec["machines"])
    assert cfg.num_processes > 1
    assert cfg.metadata["per_gpu_bytes"] == rec["per_gpu_bytes"]  # the estimate pricing fitted
    write_launch(cfg, tmp_path)
    checked = validate_config(tmp_path / "accelerate.yaml")
    assert checked.distributed_type == "FSDP" and checked.num_processes == rec["gpu_count"]


def test_70b_qlora_plan_launches_fsdp_qlora(tmp_path, plan_70b_qlora):
    est, costs = plan_70b_qlora
    rec = costs.to_dict()["recommendation"]
    assert rec["strategy"] == "fsdp-qlora" and rec["gpu_count"] >= 2
    cfg = plan_launch(est, recommended_machine(costs))
    assert cfg.strategy == "fsdp-qlora" and cfg.num_processes == rec["gpu_count"]
    assert cfg.metadata["bnb_4bit_quant_storage"] == "bfloat16"
    write_launch(cfg, tmp_path)
    checked = validate_config(tmp_path / "accelerate.yaml")
    assert checked.plugin["use_orig_params"] is False and checked.plugin["cpu_ram_efficient_loading"]


def test_every_strategy_name_is_known():
    assert set(STRATEGIES) == {"single-gpu", "data-parallel", "fsdp", "fsdp-qlora", "zero3"}
