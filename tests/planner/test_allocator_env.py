"""--allocator expandable becomes PYTORCH_CUDA_ALLOC_CONF for the run (planner/allocator.py)."""
from planner.allocator import allocator_env


def test_expandable_sets_the_variable_and_keeps_the_users_options():
    assert allocator_env("caching") == {}
    assert allocator_env("expandable") == {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
    assert allocator_env("expandable", "max_split_size_mb:128") == {
        "PYTORCH_CUDA_ALLOC_CONF": "max_split_size_mb:128,expandable_segments:True"}
    assert allocator_env("expandable", "expandable_segments:False") == {}  # the user's own choice stands
