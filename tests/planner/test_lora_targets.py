"""--lora-targets follows PEFT's matching rule, and all-linear's known failure is named (issue 14)."""
import pytest

from planner import Job, resolve
from planner.errors import PlannerError
from planner.weights import LLAMA4_TARGETS, all_linear_problem, lora_targets


def names(model, targets):
    return sorted({n for n, _, _ in lora_targets(resolve(model), Job(mode="lora", lora_targets=targets))})


def test_a_name_also_matches_as_a_dotted_suffix():
    # peft check_target_module_exists: "gate_proj" is the module name or ends with ".gate_proj"
    assert names("llama4-scout", LLAMA4_TARGETS) == [
        "k_proj", "o_proj", "q_proj", "shared_expert.down_proj", "shared_expert.gate_proj",
        "shared_expert.up_proj", "v_proj"]
    assert names("llama3-8b", "q_proj,v_proj") == ["q_proj", "v_proj"]


def test_an_unknown_target_is_still_refused():
    with pytest.raises(PlannerError, match="--lora-targets proj not in"):
        names("llama3-8b", "proj")
    # the fused experts are parameters: a module name does not reach them by suffix
    with pytest.raises(PlannerError, match="--lora-targets gate_up_proj not in"):
        names("qwen3-30b-a3b", "gate_up_proj")
    assert names("qwen3-30b-a3b", "experts.gate_up_proj,q_proj") == ["experts.gate_up_proj", "q_proj"]


def test_all_linear_on_llama4_is_named_with_its_fix():
    spec = resolve("llama4-scout")
    assert LLAMA4_TARGETS in all_linear_problem(spec, Job(mode="qlora"))
    assert all_linear_problem(spec, Job(mode="lora", lora_targets=LLAMA4_TARGETS)) is None
    assert all_linear_problem(spec, Job(mode="full")) is None
    assert all_linear_problem(resolve("qwen3-30b-a3b"), Job(mode="lora")) is None
