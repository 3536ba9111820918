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
    api: bool = typer.Option(False, "--api", help="Use the Price List Query API (needs the aws extra and AWS "
                                                  "credentials) instead of the public bulk price files."),
    spot: bool = typer.Option(True, "--spot/--no-spot", help="Also refresh EC2 spot prices (only where AWS "
                                                             "credentials exist: spot history has no public file)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Read current AWS prices (public price list files: no AWS account needed); write the user catalog."""
    from .progress import byte_progress, waiting
    if api and not spot:  # issue 19: no flag silently ignored
        from planner.errors import PlannerError
        raise PlannerError("--no-spot does nothing with --api: the Price List API refresh always reads spot "
                           "history; drop one of them")
    if api:
        from .validate import AWS_MODULES, require_extra
        require_extra("plan prices refresh --api", "aws", *AWS_MODULES[:2])
        from pricing.refresh import refresh
        with waiting("the AWS Price List API"):
            result = refresh(region or ["us-east-1"])
    else:
        from pricing.refresh import refresh_bulk
        with byte_progress("reading the AWS price list") as progress:
            result = refresh_bulk(region or ["us-east-1"], progress=progress, spot=spot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    console().print(f"wrote {result.rows} prices for {', '.join(result.regions)} to {result.path}")
    for note in getattr(result, "notes", ()):
        info(f"note: {note}")
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
        _print_prices(rows, catalog.user_file)
    if stale:
        ages = [r["age_days"] for r in stale if r["age_days"] is not None]
        oldest = f" (oldest {max(ages)} days)" if ages else ""
        warn(f"{len(stale)} of {len(rows)} prices are older than {STALE_AFTER_DAYS} days or undated{oldest}; "
             "`plan prices refresh` reads current ones from AWS's public price list (no AWS account needed)")


def _print_prices(rows: list[dict], user_file) -> None:
    """The table (instance and region whole; less useful columns dropped for width) and what each source code means."""
    from pricing.sources import codes_in, short_source, source_codes

    from .tables import dropped_note, fitted_table
    cols: dict[str, list[str]] = {k: [] for k in ("instance", "region", "usage", "$/h", "source", "as of",
                                                  "age (days)", "platform")}
    for r in rows:
        price = "unknown" if r["usd_per_hour"] is None else f"{r['usd_per_hour']:g}" + (" est." if r["estimated"] else "")
        for k, v in (("instance", r["instance_type"]), ("region", r["region"]), ("usage", r["usage"]), ("$/h", price),
                     ("source", short_source(r["source"])), ("as of", r["as_of"]),
                     ("age (days)", "?" if r["age_days"] is None else str(r["age_days"])), ("platform", r["platform"])):
            cols[k].append(v)
    where = f"user catalog {user_file} over the bundled one" if user_file else "bundled catalog"
    out = console()
    table, dropped = fitted_table(f"{len(rows)} prices ({where})", cols, out.width, keep={"instance", "region"},
                                  drop=("platform", "as of", "age (days)", "source"), right={"$/h", "age (days)"})
    out.print(table)
    if (note := dropped_note(dropped)) is not None:
        out.print(note)
    used = list(dict.fromkeys(c for r in rows for c in codes_in(r["source"])))
    meaning = source_codes()
    if used or any(short_source(r["source"]) == "other" for r in rows):
        out.print("sources:")
        for code in used:
            out.print(f"  {code} = {meaning[code]}")
        if any(short_source(r["source"]) == "other" for r in rows):
            out.print("  other = a public document named in the row's source (`--json` shows it)")
