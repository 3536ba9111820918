"""Instance catalogs, fitting a memory estimate onto GPUs, and job cost.

``plan_costs(est, load_catalog(), ...)`` prices a plan; ``planner.cli.price_request`` glues it to ``plan``.
"""
from .catalog import load_catalog
from .costs import Money, PlanCosts, plan_costs

__all__ = ["load_catalog", "plan_costs", "Money", "PlanCosts"]
