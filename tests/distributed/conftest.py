"""Shared helpers for the distributed tests: priced plans from the real estimate and pricing code."""
from __future__ import annotations

import pytest

from planner.estimate import estimate


def priced(model: str, **job):
    """(estimate, costs) from the real planner and pricing catalog (us-east-1, any platform)."""
    from planner.cli.price_request import price_request

    est = estimate(model, **job)
    costs = price_request(est, platform="any", region="us-east-1", spot=False, gpu=None, max_gpus=None,
                          tokens=None, dataset=None, epochs=1.0, currency=None, usd_rate=None)
    return est, costs


@pytest.fixture(scope="session")
def plan_70b_full():
    return priced("llama3-70b", mode="full")


@pytest.fixture(scope="session")
def plan_70b_qlora():
    # seq 4096 x batch 3 fits no single GPU (batch 2 fits a 96 GB RTX PRO 6000 once reserved memory is
    # modelled rather than a flat 13% slack): pricing picks FSDP-QLoRA over 2 GPUs
    return priced("llama3-70b", mode="qlora", seq_len=4096, batch_size=3)
