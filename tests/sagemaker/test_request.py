"""The pure parts: choosing the SageMaker machine from a pricing result, limits, names, secrets."""
from __future__ import annotations

import pytest

from backend.sagemaker.errors import SageMakerError
from backend.sagemaker.request import (SageMakerChoice, build_training_request, check_no_secrets, job_names,
                                       max_runtime_seconds, sagemaker_choice, volume_size_gb)

from .plans import EC2_FIRST, EC2_ONLY, ONE_GPU, TWO_NODES, UNPRICED


def test_the_sagemaker_recommendation_is_used_as_is():
    assert sagemaker_choice(ONE_GPU) == SageMakerChoice("ml.g5.2xlarge", 1, 1, 1.515, 2.0, 3.03, "single-gpu")
    assert sagemaker_choice(TWO_NODES) == SageMakerChoice("ml.p4d.24xlarge", 2, 8, 25.25, 2.0, 101.0, "fsdp")


def test_an_ec2_recommendation_falls_back_to_the_cheapest_fitting_sagemaker_candidate():
    # ml.g4dn.xlarge is cheaper but does not fit: ml.g5.2xlarge is the choice.
    assert sagemaker_choice(EC2_FIRST).instance_type == "ml.g5.2xlarge"


@pytest.mark.parametrize("costs", [None, EC2_ONLY])
def test_a_plan_without_a_sagemaker_candidate_is_a_clear_error(costs):
    with pytest.raises(SageMakerError, match="SageMaker"):
        sagemaker_choice(costs)


@pytest.mark.parametrize("hours,seconds", [(None, 86400), (0.01, 3600), (2.0, 12600), (10.0, 55800),
                                           (1000.0, 28 * 86400)])
def test_max_runtime_is_the_estimate_with_a_margin_within_sagemakers_limits(hours, seconds):
    assert max_runtime_seconds(hours) == seconds


def test_volume_holds_the_base_weights_and_checkpoints():
    assert volume_size_gb(494_032_768, "qlora") == 50          # small model: the 50 GB floor
    assert volume_size_gb(70_553_706_496, "qlora") == 369      # 141 GB bf16 x 2 x 1.2 + 30
    assert volume_size_gb(8_030_261_248, "full") == 185        # 16 GB x 8 x 1.2 + 30


def test_job_names_fit_sagemakers_63_characters():
    base, name = job_names("meta-llama/Meta-Llama-3.1-405B-Instruct-with-a-very-long-suffix", "prompt-tuning",
                           "20261127120000")
    assert len(name) <= 63 and name.startswith(base) and name.endswith("20261127120000")


def test_secrets_never_ride_in_hyperparameters():
    with pytest.raises(SageMakerError, match="contains the value of HF_TOKEN"):
        check_no_secrets({"model": "x hf_abc"}, {"HF_TOKEN": "hf_abc"})
    with pytest.raises(SageMakerError, match="looks like a secret"):
        check_no_secrets({"hf-token": "x"}, {})
    check_no_secrets({"plan": "plan.json"}, {"HF_TOKEN": "hf_abc"})


def _build(costs, **kw):
    args = dict(model_name="qwen2.5-0.5b", hf_id="Qwen/Qwen2.5-0.5B", mode="qlora", params=494_032_768,
                choice=sagemaker_choice(costs), region="us-east-1",
                role_arn="arn:aws:iam::123456789012:role/r", bucket="b", dataset="d.jsonl", image_uri="img",
                stamp="20261127120000")
    return build_training_request(**{**args, **kw})


def test_cost_cap_and_unknown_prices():
    assert _build(ONE_GPU, max_cost=3.03).estimated_usd == 3.03
    with pytest.raises(SageMakerError, match=r"\$3.03 .* over --max-cost \$3.02"):
        _build(ONE_GPU, max_cost=3.02)
    with pytest.raises(SageMakerError, match="cannot check --max-cost: no price known"):
        _build(UNPRICED, max_cost=10)
    r = _build(UNPRICED)
    assert r.estimated_usd is None and r.max_usd is None
    assert any("no price known" in n for n in r.notes)
    with pytest.raises(SageMakerError, match="needs --dataset"):
        _build(ONE_GPU, dataset="")
