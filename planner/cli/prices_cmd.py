"""``plan prices refresh|show``: fetch current AWS prices into the user catalog; list what is known."""
from __future__ import annotations

import json
from datetime import date
from typing import List, Optional

import typer

from . import app
from .output import console, info, warn

prices_app = typer.Typer(help="The price catalog: show what is known and how old it is; refresh it from AWS.",
                         no_args_is_help=True, rich_markup_mode=None)
app.add_typer(prices_app, name="prices")


@prices_app.command("refresh")
def refresh_cmd(
    region: Optional[List[str]] = typer.Option(None, "--region", help="Region to refresh (repeatable; default us-east-1)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Read the AWS Price List API and EC2 spot history; write the user catalog (it wins over the bundled one)."""
    from .validate import AWS_MODULES, require_extra
    require_extra("plan prices refresh", "aws", *AWS_MODULES[:2])
    from pricing.refresh import refresh

    from .progress import waiting
    with waiting("the AWS Price List API"):
        result = refresh(region or ["us-east-1"])
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    console().print(f"wrote {result.rows} prices for {', '.join(result.regions)} to {result.path}")
    if result.unknown:
        info(f"no price from AWS for {len(result.unknown)} instance/usage pair(s): {', '.join(result.unknown[:8])}"
             + (" ..." if len(result.unknown) > 8 else ""))


@prices_app.command("show")
def show_cmd(
    region: Optional[str] = typer.Option(None, "--region", help="Only this region."),
    platform: Optional[str] = typer.Option(None, "--platform", help="ec2 | sagemaker"),
    regions: bool = typer.Option(False, "--regions", help="List the AWS regions pricing knows of."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the known prices with their source and age."""
    from pricing.catalog import STALE_AFTER_DAYS, age_days, load_catalog
    from planner.errors import PlannerError

    if regions and (region is not None or platform is not None):  # issue 19: no flag silently ignored
        raise PlannerError(f"--{'region' if region is not None else 'platform'} does nothing here: --regions lists "
                           "the regions, not prices")
    catalog = load_catalog()
    if regions:
        rows = [{"region": r.region, "name": r.name} for r in catalog.regions]
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        else:
            for r in rows:
                console().print(f"{r['region']:<16} {r['name']}")
        return
    if region is not None:
        catalog.check_region(region)
    if platform is not None and platform not in ("ec2", "sagemaker"):
        raise PlannerError(f"unknown platform '{platform}'; choose ec2 or sagemaker")
    today = date.today()
    prices = [p for p in catalog.prices if (region is None or p.region == region)
              and (platform is None or p.platform == platform)]
    rows = [{"platform": p.platform, "instance_type": p.instance_type, "region": p.region, "usage": p.usage,
             "usd_per_hour": p.usd_per_hour, "verified": p.verified, "estimated": p.estimated, "source": p.source,
             "as_of": p.as_of, "age_days": age_days(p.as_of, today), "note": p.note, "origin": p.origin}
            for p in prices]
    stale = [r for r in rows if r["usd_per_hour"] is not None and (r["age_days"] is None or r["age_days"] > STALE_AFTER_DAYS)]
    if as_json:
        typer.echo(json.dumps({"user_catalog": catalog.user_file, "prices": rows}, indent=2))
    else:
        from rich.table import Table
        where = f"user catalog {catalog.user_file} over the bundled one" if catalog.user_file else "bundled catalog"
        table = Table(title=f"{len(rows)} prices ({where})", title_justify="left")
        for col in ("platform", "instance", "region", "usage", "$/h", "as of", "age (days)", "source"):
            table.add_column(col, justify="right" if col in ("$/h", "age (days)") else "left")
        for r in rows:
            price = "unknown" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:g}" + (" est." if r["estimated"] else "")
            table.add_row(r["platform"], r["instance_type"], r["region"], r["usage"], price, r["as_of"],
                          "?" if r["age_days"] is None else str(r["age_days"]), r["source"].split(" via ")[0])
        console().print(table)
    if stale:
        warn(f"{len(stale)} of {len(rows)} prices are older than {STALE_AFTER_DAYS} days or undated; "
             "run `plan prices refresh` for current ones")
