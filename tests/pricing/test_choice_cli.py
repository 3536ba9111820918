"""The choice as the CLI shows it: --region any, honest --spot, --objective, --max-hours, --max-cost
(start-up included), --tokens with suffixes, and output labels people can read."""
from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from planner import estimate
from tests.cli import run
from planner.cli.price_request import parse_tokens
from planner.cli.render_costs import render_costs
from planner.errors import PlannerError
from pricing.catalog import load_catalog
from pricing.costs import Money, plan_costs


@pytest.fixture(autouse=True)
def no_user_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))  # the bundled catalog only


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


def one_line_error(code, err, message):
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


def test_short_qlora_job_has_start_up_and_max_cost_refuses_it(capsys):
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "10k", "--json")
    rec = json.loads(out)["recommendation"]
    assert code == 0
    assert rec["overhead_hours"] * 60 >= 3  # minutes of start-up, not seconds
    assert rec["job_usd"] > 0.03 and rec["gpus_per_machine"] <= 4
    assert rec["job_hours"] == pytest.approx(rec["overhead_hours"] + 10_000 / rec["tokens_per_second"] / 3600)
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "10000", "--max-cost", "0.001")
    text = " ".join(out.split())
    assert code == 1 and "Nothing to recommend: nothing fits within --max-cost" in text
    assert "min of start-up" in text and "raise --max-cost" in text
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "10000", "--max-cost", "1", "--json")
    assert code == 0 and json.loads(out)["recommendation"]["job_usd"] <= 1


SPREAD = [("llama3-8b", "qlora", 10**8), ("llama3-8b", "full", 10**9), ("llama3-70b", "qlora", 10**8),
          ("mistral-7b", "inference", None), ("llama3-70b", "inference", None)]


@pytest.mark.parametrize("model,mode,tokens", SPREAD)
@pytest.mark.parametrize("spot", [False, True])
def test_region_any_is_never_dearer_than_us_east_1(catalog, model, mode, tokens, spot):
    est = estimate(model, mode=mode)
    home = plan_costs(est, catalog, tokens=tokens, spot=spot, platform="ec2" if spot else "any")
    anywhere = plan_costs(est, catalog, tokens=tokens, spot=spot, region="any",
                          platform="ec2" if spot else "any")
    assert home.objective == anywhere.objective
    a, h = anywhere.recommendation, home.recommendation
    assert a is not None and h is not None
    assert a.cost(anywhere.objective) <= h.cost(home.objective) + 1e-9
    assert a.region in catalog.priced_regions() and f"chose {a.region}" in " ".join(anywhere.notes)
    assert len({c.region for c in anywhere.candidates}) == anywhere.extra["regions_searched"] > 20


def test_region_any_names_the_region_in_the_cli(capsys):
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "50M", "--region", "any")
    assert code == 0 and "note: --region any: searched 23 regions; chose " in out
    header = next(line for line in out.splitlines() if line.startswith("instance "))
    assert " region " in header  # alternatives name theirs (a column of their own, never dropped for width)


def test_spot_is_never_silently_on_demand(catalog):
    est = estimate("llama3-8b", mode="qlora")
    costs = plan_costs(est, catalog, tokens=10**8, spot=True)
    assert {c.usage for c in costs.candidates} == {"spot"}
    for c in costs.candidates:
        if c.platform == "sagemaker" and c.usd_per_hour_per_machine is not None:
            assert c.price_estimated and "managed-spot" in c.price_note
            od = catalog.price("sagemaker", c.instance_type, c.region, "training")
            assert c.usd_per_hour_per_machine <= od.usd_per_hour
    infer = plan_costs(estimate("mistral-7b", mode="inference"), catalog, spot=True)
    assert {c.platform for c in infer.candidates} == {"ec2"}  # hosting has no spot: not priced on-demand
    assert any("SageMaker hosting has no spot" in n for n in infer.notes)


def test_spot_for_sagemaker_hosting_is_one_line(capsys):
    code, _, err = run(capsys, "mistral-7b", "--mode", "inference", "--platform", "sagemaker", "--spot")
    one_line_error(code, err, "SageMaker hosting (inference endpoints) has no spot capacity")


def test_usage_says_which_price(capsys):
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "1e8", "--platform", "sagemaker",
                       "--spot")
    assert code == 0 and "(SageMaker managed spot, estimated)" in out and "price basis" in out
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--platform", "ec2", "--spot")
    assert "(EC2 spot)" in out and "ranged" in " ".join(out.split())


def test_objective_ranks_and_is_named(catalog, capsys):
    est = estimate("llama3-8b", mode="qlora")
    by = {name: plan_costs(est, catalog, tokens=10**9, objective=name) for name in ("job-cost", "hourly", "time")}
    assert by["job-cost"].objective == "job_usd" and plan_costs(est, catalog, tokens=10**9).objective == "job_usd"
    assert plan_costs(est, catalog).objective == "usd_per_hour"
    for name, field in (("job-cost", "job_usd"), ("hourly", "usd_per_hour"), ("time", "job_hours")):
        best = getattr(by[name].recommendation, field)
        assert all(best <= getattr(c, field) + 1e-9 for c in by[name].candidates
                   if c.fits and getattr(c, field) is not None)
    assert by["time"].recommendation.job_hours < by["job-cost"].recommendation.job_hours
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "2B", "--objective", "time")
    assert code == 0 and "ranked by job time, --objective" in out and "(by job time)" in out
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora")
    assert "ranked by cost per hour, the default" in out


def test_max_hours_is_a_deadline(catalog):
    est = estimate("llama3-8b", mode="qlora")
    costs = plan_costs(est, catalog, tokens=10**9, max_hours=10)
    assert costs.recommendation.job_hours <= 10
    assert all(c.job_hours <= 10 for c in costs.candidates if c.fits)
    assert any("over --max-hours 10" in c.reason for c in costs.candidates)
    none = plan_costs(est, catalog, tokens=10**9, max_hours=0.01)
    assert none.exit_code == 1 and none.verdict.startswith("nothing fits within --max-hours: the fastest")


def test_zero_fit_wording_names_the_limit_and_money_is_in_cents(capsys):
    """Issue 18: '0 fit' never stands bare beside a verdict about a job that fits in memory; totals in cents."""
    code, out, err = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "1B", "--max-hours", "0.01")
    text = " ".join((out + err).split())
    assert code == 1 and "the fastest job that fits in memory" in text and "fitting job" not in text
    assert re.search(r"\d+ candidates considered, 0 fit; \d+ more fit in memory but are over --max-hours \(", text)
    assert re.search(r"costs \$[\d,]+\.\d\d and takes", text)
    code, out, _ = run(capsys, "llama3-8b", "--mode", "qlora", "--tokens", "1B", "--currency", "INR", "--usd-rate", "88.5")
    assert code == 0 and re.search(r"\(INR \d{1,2},\d\d,\d{3}\.\d\d\)", out)  # lakh grouping, e.g. 1,20,229.90


@pytest.mark.parametrize("args,message", [
    (["--objective", "speed"], "unknown --objective 'speed'; choose job-cost, hourly or time"),
    (["--objective", "time"], "--objective time needs a training job with --tokens or --dataset"),
    (["--max-hours", "5"], "--max-hours needs a training job with --tokens or --dataset"),
    (["--tokens", "1e8", "--max-hours", "-1"], "--max-hours must be a positive number"),
    (["--tokens", "1e8", "--max-cost", "nan"], "--max-cost must be a finite number, got nan"),
    (["--tokens", "nan"], "--tokens must be a positive number of tokens such as 50000000, 50M"),
    (["--tokens", "inf"], "--tokens must be a positive number of tokens"),
    (["--tokens", "-5"], "--tokens must be a positive integer"),
    (["--tokens", "0.2"], "--tokens must be a positive integer"),
    (["--gpu", "rtx 4090", "--objective", "time"], "--objective: rank cloud machines and do not apply to --gpu"),
])
def test_bad_flags_are_one_line(capsys, args, message):
    code, _, err = run(capsys, "llama3-8b", "--mode", "qlora", *args)
    one_line_error(code, err, message)


@pytest.mark.parametrize("text,tokens", [("50M", 50_000_000), ("2B", 2 * 10**9), ("1.5e9", 1_500_000_000),
                                         ("10k", 10_000), ("2b", 2 * 10**9), ("1,000", 1000), ("123", 123),
                                         ("50,000,000", 50_000_000), ("1,500k", 1_500_000)])
def test_tokens_with_suffixes(text, tokens):
    assert parse_tokens(text) == tokens


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "1e999", "5X", "", "0", "1,5", "12,3456", ",000"])
def test_tokens_refused(text):
    with pytest.raises(PlannerError):
        parse_tokens(text)


def rendered(costs, width=100) -> str:
    buf = io.StringIO()
    render_costs(Console(file=buf, width=width, no_color=True, color_system=None, highlight=False), costs)
    return buf.getvalue()


def test_labels_per_gpu_and_gpus_used_of_total(catalog):
    out = rendered(plan_costs(estimate("llama3-70b", mode="inference"), catalog, platform="ec2", spot=True))
    assert "p4d.24xlarge on ec2, us-east-1 (8 x A100-40GB, 40 GiB per GPU)" in out
    assert "tensor-parallel: 4 of 8 x A100-40GB" in out  # used of total: 4 GPUs of the 8 paid for
    assert "per machine)" not in out


def test_names_never_truncated_and_currency_everywhere(catalog):
    costs = plan_costs(estimate("llama3-8b", mode="qlora"), catalog, tokens=10**9, money=Money("INR", 88.5),
                       region="any")
    for width in (60, 80, 100):
        out = rendered(costs, width)
        assert "…" not in out.split("Next-best")[1]  # nothing cut short: columns dropped or folded
        for c in costs.alternatives():
            assert c.instance_type in out
    out = rendered(costs, 140)
    assert "INR/h" in out and "job INR" in out
    for c in costs.alternatives():
        assert f"{c.job_usd * 88.5:,.2f}" in out


def test_empty_columns_dropped(catalog):
    out = rendered(plan_costs(estimate("mistral-7b", mode="inference"), catalog))
    assert "job h" not in out and "job $" not in out


def test_fit_is_coloured_on_a_terminal(catalog):
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system="standard")
    render_costs(console, plan_costs(estimate("llama3-8b", mode="qlora"), catalog))
    assert "\x1b[32mCheapest machine that fits" in buf.getvalue()
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True, color_system="standard")
    render_costs(console, plan_costs(estimate("llama3.1-405b", mode="full"), catalog, max_gpus=8))
    assert "\x1b[31mNothing to recommend" in buf.getvalue()


def test_sagemaker_spot_request_is_priced_at_the_managed_spot_estimate(catalog):
    from backend.sagemaker.request import build_training_request, sagemaker_choice

    est = estimate("llama3-8b", mode="qlora")
    spot = plan_costs(est, catalog, platform="sagemaker", tokens=10**8, spot=True)
    rec = spot.recommendation
    assert rec.usage == "spot" and rec.price_estimated
    choice = sagemaker_choice(spot)
    assert choice.usd_per_hour == rec.usd_per_hour_per_machine
    od = catalog.price("sagemaker", rec.instance_type, rec.region, "training").usd_per_hour
    assert choice.usd_per_hour < od  # the estimate, not the on-demand training price
    r = build_training_request(model_name="llama3-8b", hf_id="meta-llama/Meta-Llama-3-8B", mode="qlora",
                               params=est.params.total, choice=choice, region="us-east-1",
                               role_arn="arn:aws:iam::123456789012:role/x", bucket="b", dataset="s3://b/d",
                               image_uri="img", stamp="20260101000000", spot=True)
    assert r.estimated_usd == round(rec.job_usd, 2)
    assert any("managed-spot estimate" in n for n in r.notes)
    assert not any("on-demand price" in n for n in r.notes)
