"""`panui` — the command-line tool for agencies, ops and the coordinator."""

import typer

app = typer.Typer(help="Pānui: one coordinated breach notice per person.", no_args_is_help=True)
contracts_app = typer.Typer(help="The message and API contracts in contracts/.", no_args_is_help=True)
app.add_typer(contracts_app, name="contracts")


def _register_commands() -> None:
    from services.cli import feed_status  # noqa: F401 - registers `panui feed status`
    from services.cli.deadletters import dead_letters_app
    from services.cli.feeds import feed_app
    from services.cli.incidents import incident_app
    from services.cli.keys import keys_app
    from services.cli.lag import lag_command
    from services.cli.letters import letters_app
    from services.cli.report import report_command
    from services.cli.resolve import resolve_command
    from services.cli.staff import audit_command, token_app

    app.add_typer(feed_app, name="feed")
    app.add_typer(dead_letters_app, name="dead-letters")
    app.add_typer(letters_app, name="letters")
    app.add_typer(keys_app, name="keys")
    app.add_typer(incident_app, name="incident")
    app.add_typer(token_app, name="token")
    app.command("audit", help="A service's audit log of privileged acts.")(audit_command)
    app.command("resolve", help="Resolve affected records to persons offline (preview a dedupe).")(
        resolve_command)
    app.command("report", help="The Privacy Commissioner's report: counts per incident and "
                "agency, no personal data (JSON, CSV, table).")(report_command)
    app.command("lag", help="Consumer group lag and status from Kafka (for ops, cron and probes).")(
        lag_command)


_register_commands()


@contracts_app.command("export")
def contracts_export() -> None:
    """Regenerate contracts/schemas and contracts/openapi from the code."""
    from services.cli import contracts

    written = contracts.export()
    for path in written:
        typer.echo(f"wrote {path.relative_to(contracts.REPO_ROOT)}")
    if not written:
        typer.echo("contracts are up to date")


if __name__ == "__main__":
    app()
