"""--gpu SPEC parsing against the bundled card table (pricing/data/local_gpus.csv)."""
import pytest

from planner.errors import PlannerError
from planner.gpuspec import cards_from_rows, parse_gpu_spec
from pricing.catalog import load_catalog

CARDS = cards_from_rows(load_catalog(user_dir=False).local_gpus)
GIB, MIB = 1024**3, 1024**2


@pytest.mark.parametrize("spec, count, mem, name", [
    ("RTX 4090", 1, 24564 * MIB, "RTX 4090"),
    ("2x RTX 3090", 2, 24576 * MIB, "RTX 3090"),
    ("2 x rtx 3090", 2, 24576 * MIB, "RTX 3090"),
    ("24GiB", 1, 24 * GIB, None),
    ("2x 80GB", 2, 80 * 10**9, None),
    ("8x H100 NVL", 8, 95830 * MIB, "H100 NVL"),
    ("NVIDIA GeForce RTX 4070 Ti", 1, 12282 * MIB, "RTX 4070 Ti"),
    ("A100 80GB", 1, 81920 * MIB, "A100 80GB"),
    ("a100-40gb", 1, 40960 * MIB, "A100 40GB"),
    ("T4", 1, 15360 * MIB, "T4"),
    ("B200", 1, 183359 * MIB, "B200"),
    ("16", 1, 16 * GIB, None),
])
def test_parses(spec, count, mem, name):
    g = parse_gpu_spec(spec, CARDS)
    assert (g.count, g.memory_bytes, g.name) == (count, mem, name)
    assert g.source


def test_every_issue_card_is_known():
    for n in ("T4", "L4", "A10G", "RTX 4080", "RTX 4070 Ti", "RTX 3060", "RTX A5000", "RTX 6000 Ada",
              "A100 40GB", "A100 80GB", "H100 PCIe", "H100 NVL", "H200", "B200"):
        assert parse_gpu_spec(n, CARDS).name == n


@pytest.mark.parametrize("spec, needle", [
    ("A100", "ambiguous"), ("0x 24GiB", "at least one"), ("-5GiB", "positive"), ("2x -5GiB", "positive"),
    ("", "empty"), ("Voodoo 5", "unknown GPU"), ("0GiB", "positive"),
])
def test_bad_spec_is_one_line(spec, needle):
    with pytest.raises(PlannerError) as err:
        parse_gpu_spec(spec, CARDS)
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_ambiguous_lists_the_choices():
    with pytest.raises(PlannerError) as err:
        parse_gpu_spec("A100", CARDS)
    assert "'A100 40GB'" in str(err.value) and "'A100 80GB'" in str(err.value)
