"""Issue 10: one fit rule. Pricing's candidates, ``--gpu`` and ``--execute --backend local`` give the
same verdict, strategy and per-GPU figure for the same job on the same GPUs (jobs x GPUs enumerated);
the suggestions really fit when their flags are appended; bad --gpu / --allocator input is one line."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from backend.local import check_fit, local_strategy
from planner import PlannerError, estimate
from tests.cli import run
from pricing.catalog import load_catalog
from pricing.choose import build_candidates
from pricing.localgpu import local_costs

MIB = 1024**2
JOBS = [("qwen2.5-0.5b", "full", 2048), ("llama3-8b", "qlora", 2048), ("llama3-8b", "full", 1024),
        ("llama3-8b", "lora", 8192)]
GPUS = [(1, 12288), (1, 24564), (1, 81559), (2, 24576), (8, 40960)]


@pytest.fixture(autouse=True)
def no_user_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("PLAN_CACHE_DIR", str(tmp_path))


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(user_dir=False)


def pricing_path(est, catalog, n, mib):
    """A one-instance catalog with this GPU (no EFA): what `plan` without --gpu would decide."""
    base = catalog.instance("g5.12xlarge")
    inst = replace(base, gpu_count=n, gpu_memory_gib=mib / 1024, efa=False)
    one = replace(catalog, instances=(inst,), prices=tuple(p for p in catalog.prices if p.instance_type == base.instance_type
                                                          and p.platform == "ec2"))
    (cand,) = build_candidates(est, one, platform="ec2")
    return cand.fits, cand.strategy, cand.per_gpu_bytes


def gpu_path(est, catalog, n, mib):
    c = local_costs(est, catalog, f"{n}x {mib}MiB").recommendation
    return c.fits, c.strategy, c.per_gpu_bytes


def execute_path(est, n, mib):
    gpu = {"name": "GPU", "count": n, "total_memory_bytes": mib * MIB}
    if n == 1:
        try:
            check_fit(est, gpu, force=False)
            ok = True
        except PlannerError:
            ok = False
        machine, _ = local_strategy(est, gpu, force=True)  # the same rule on one GPU
        return ok, "single-gpu" if ok else machine.strategy, machine.per_gpu_bytes
    try:
        machine, _ = local_strategy(est, gpu, force=False)
        return True, machine.strategy, machine.per_gpu_bytes
    except PlannerError:
        machine, _ = local_strategy(est, gpu, force=True)
        return False, machine.strategy, machine.per_gpu_bytes


@pytest.mark.slow  # replays many shapes through every fit path
@pytest.mark.parametrize("model,mode,seq", JOBS)
def test_three_paths_agree(catalog, model, mode, seq):
    est = estimate(model, mode=mode, seq_len=seq)
    for n, mib in GPUS:
        p, g, e = pricing_path(est, catalog, n, mib), gpu_path(est, catalog, n, mib), execute_path(est, n, mib)
        assert p == g, (n, mib, p, g)
        assert p[0] == e[0] and p[2] == e[2], (n, mib, p, e)
        if p[0]:
            assert p[1] == e[1], (n, mib, p, e)


def test_single_gpu_need_is_the_estimates_total(catalog):
    est = estimate("llama3-8b", mode="qlora")
    c = local_costs(est, catalog, "RTX 4090").recommendation
    assert c.per_gpu_bytes == est.total_bytes
    assert c.usable_bytes_per_gpu == 24564 * MIB - est.cuda_context_bytes


def test_full_8b_on_a_4090_suggests_changes_that_fit(capsys):
    cmd = ["llama3-8b", "--mode", "full", "--gpu", "RTX 4090", "--json"]
    code, out, _ = run(capsys, *cmd)
    d = json.loads(out)
    assert code == 1 and d["recommendation"]["fits"] is False
    assert d["recommendation"]["per_gpu_bytes"] > d["recommendation"]["usable_bytes_per_gpu"] > 0
    assert len(d["suggestions"]) >= 2
    for s in d["suggestions"]:
        assert s["fits"] is True and s["why"]
        code, out, _ = run(capsys, *cmd, *s["flags"])
        rec = json.loads(out)["recommendation"]
        assert code == 0 and rec["fits"] is True, s
        assert rec["per_gpu_bytes"] == s["per_gpu_bytes"], s


def test_suggestions_are_shown_to_humans(capsys):
    code, out, _ = run(capsys, "llama3-8b", "--mode", "full", "--gpu", "RTX 4090")
    assert code == 1 and "What would make it fit" in out and "--mode qlora" in out


@pytest.mark.slow  # replays many shapes through every fit path
def test_several_gpus_pick_the_strategy(capsys):
    code, out, _ = run(capsys, "llama3-70b", "--mode", "qlora", "--gpu", "8x RTX 3090", "--json")
    rec = json.loads(out)["recommendation"]
    assert code == 0 and rec["strategy"] == "fsdp-qlora" and rec["gpu_count"] == 8


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "0x 24GiB"], "--gpu needs at least one GPU"),
    (["--gpu", "-5GiB"], "--gpu memory must be positive"),
    (["--gpu", "A100"], "ambiguous"),
    (["--allocator", "foo"], "unknown allocator 'foo'"),
])
def test_bad_input_is_one_line(capsys, args, needle):
    code, out, err = run(capsys, "llama3-8b", *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err


def test_seq_len_beyond_the_context_is_one_warning(capsys):
    code, out, err = run(capsys, "llama3-8b", "--seq-len", "10000", "--no-pricing", "--json")
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert code == 0 and len(warnings) == 1 and "beyond Meta-Llama-3-8B's context of 8,192" in warnings[0]


def test_nothing_in_the_catalog_fits_suggests_changes_that_fit(capsys):
    cmd = ["llama3.1-405b", "--mode", "full", "--max-gpus", "8", "--json"]
    code, out, _ = run(capsys, *cmd)
    d = json.loads(out)
    assert code == 1 and d["recommendation"] is None and d["suggestions"]
    s = d["suggestions"][-1]
    code, out, _ = run(capsys, *cmd, *s["flags"])
    assert code == 0 and json.loads(out)["recommendation"]["fits"] is True, s
