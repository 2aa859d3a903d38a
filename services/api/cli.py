"""CLI commands of the API service (registered by services.cli).

    canary-voice accounts create NAME [--cps N]
    canary-voice accounts limits NAME [--cps N] [--max-live-calls N | --default-live-calls]
    canary-voice accounts intake-key NAME [--revoke]             (Kafka intake key, printed once)
    canary-voice keys create --account NAME --test|--live      (prints the key once)
    canary-voice numbers add --account NAME +E164
    canary-voice numbers list --account NAME
    canary-voice numbers route +E164 --account NAME [--voice-url URL | --flow-id ID] [--webhook-url URL] [--clear]
    canary-voice dev-setup                                       (what `make run` calls)
    canary-voice api                                             (serve the HTTP API)
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

import typer

from services.common.clitools import fail, with_db

from services.common import accounts as repo

DEV_ACCOUNT = "dev"
DEV_NUMBER = "+15559876543"


def _fail(msg: str) -> None:
    fail(msg)


def _with_db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    return with_db(fn, expected=(repo.AccountError,))


async def _account(conn: Any, name: str) -> dict:
    acct = await repo.get_account(conn, name)
    if acct is None:
        raise repo.AccountError("account_not_found", f"no account named {name!r}")
    return acct


def register(app: typer.Typer) -> None:
    accounts_app = typer.Typer(help="Accounts.", no_args_is_help=True)
    keys_app = typer.Typer(help="API keys (stored only as hashes; shown once).", no_args_is_help=True)
    numbers_app = typer.Typer(help="Verified caller ids of an account.", no_args_is_help=True)
    app.add_typer(accounts_app, name="accounts")
    app.add_typer(keys_app, name="keys")
    app.add_typer(numbers_app, name="numbers")

    @accounts_app.command("create")
    def accounts_create(name: str,
                        cps: float = typer.Option(None, "--cps", help="call creations per second (default 10)")
                        ) -> None:
        """Create an account."""
        acct = _with_db(lambda c: repo.create_account(c, name, cps))
        typer.echo(f"{acct['id']} {acct['name']}")

    @accounts_app.command("limits")
    def accounts_limits(name: str,
                        cps: float = typer.Option(None, "--cps", help="call creations per second"),
                        max_live_calls: int = typer.Option(None, "--max-live-calls",
                                                           help="concurrent calls (0: none may be placed)"),
                        default_live_calls: bool = typer.Option(False, "--default-live-calls",
                                                                help="back to the deployment's default")) -> None:
        """Change an account's limits (API processes pick them up within their key cache TTL)."""
        async def go(c: Any) -> str:
            acct = await _account(c, name)
            await repo.set_limits(c, acct["id"], calls_per_second=cps, max_live_calls=max_live_calls,
                                  default_live_calls=default_live_calls)
            row = await c.fetchrow("SELECT calls_per_second, max_live_calls FROM accounts WHERE id = $1", acct["id"])
            live = row["max_live_calls"]
            return f"{name}: {row['calls_per_second']:g} calls/s, max live calls {live if live is not None else 'default'}"

        typer.echo(_with_db(go))

    @accounts_app.command("intake-key")
    def accounts_intake_key(name: str,
                            revoke: bool = typer.Option(False, "--revoke", help="remove the key (none works then)")
                            ) -> None:
        """Create (or replace) the account's Kafka intake key and print it once: producers other
        than the API sign the account's commands with it (CANARY_KAFKA_INTAKE_AUTH=signed)."""
        async def go(c: Any) -> str:
            acct = await _account(c, name)
            if revoke:
                return "revoked" if await repo.revoke_intake_key(c, acct["id"]) else "no intake key"
            return await repo.create_intake_key(c, acct["id"])

        typer.echo(_with_db(go))

    @keys_app.command("create")
    def keys_create(account: str = typer.Option(..., "--account", help="account name"),
                    test: bool = typer.Option(False, "--test", help="sk_test_ key (sandbox carrier)"),
                    live: bool = typer.Option(False, "--live", help="sk_live_ key (SIP trunk)")) -> None:
        """Create an API key and print it (it cannot be shown again)."""
        if test == live:
            _fail("give exactly one of --test or --live")

        async def go(c: Any) -> str:
            acct = await _account(c, account)
            return (await repo.create_key(c, acct["id"], "test" if test else "live"))[1]

        typer.echo(_with_db(go))

    @numbers_app.command("add")
    def numbers_add(number: str, account: str = typer.Option(..., "--account", help="account name")) -> None:
        """Verify a caller id (E.164) for the account."""
        async def go(c: Any) -> str:
            acct = await _account(c, account)
            return (await repo.add_number(c, acct["id"], number))["number"]

        typer.echo(_with_db(go))

    @numbers_app.command("list")
    def numbers_list(account: str = typer.Option(..., "--account", help="account name")) -> None:
        """List the account's verified caller ids."""
        async def go(c: Any) -> list:
            return await repo.list_numbers(c, (await _account(c, account))["id"])

        for n in _with_db(go):
            typer.echo(n["number"])

    @numbers_app.command("route")
    def numbers_route(number: str, account: str = typer.Option(..., "--account", help="account name"),
                      voice_url: Optional[str] = typer.Option(None, "--voice-url",
                                                              help="the app asked for an incoming call's steps"),
                      flow_id: Optional[str] = typer.Option(None, "--flow-id", help="a stored flow to run"),
                      webhook_url: Optional[str] = typer.Option(None, "--webhook-url",
                                                                help="status webhooks of its calls"),
                      clear: bool = typer.Option(False, "--clear", help="answer no calls (a caller id only)")) -> None:
        """How the number answers incoming calls (the API's PATCH /v1/voice/numbers/{number})."""
        from events.catalog import e164
        from services.lib import inbound

        given = {k: v for k, v in (("voice_url", voice_url), ("flow_id", flow_id), ("webhook_url", webhook_url))
                 if v is not None}
        if clear:
            given = {"voice_url": None, "flow_id": None, "webhook_url": None}

        async def go(c: Any) -> dict | None:
            changes = inbound.check_changes(given)
            return await inbound.set_route(c, (await _account(c, account))["id"], e164(number), changes)

        try:
            row = _with_db(go)
        except (inbound.RouteError, ValueError) as exc:
            _fail(f"{getattr(exc, 'field', None) or 'number'}: {exc}")
        if row is None:
            _fail(f"{number} is not a number of {account}")
        typer.echo(" ".join(f"{k}={row[k]}" for k in inbound.ROUTE_FIELDS if row[k]) or f"{row['number']}: no route")

    @numbers_app.command("remove")
    def numbers_remove(number: str, account: str = typer.Option(..., "--account", help="account name")) -> None:
        """Remove a verified caller id."""
        async def go(c: Any) -> bool:
            from events.catalog import e164

            return await repo.remove_number(c, (await _account(c, account))["id"], e164(number))

        if not _with_db(go):
            _fail(f"{number} is not verified for {account}")

    @app.command("dev-setup")
    def dev_setup(cps: float = typer.Option(100.0, "--cps", help="call creations per second")) -> None:
        """Idempotently create account `dev` with +15559876543 verified; print a fresh sk_test key."""
        async def go(c: Any) -> str:
            acct = await repo.ensure_account(c, DEV_ACCOUNT, cps)
            await repo.ensure_number(c, acct["id"], DEV_NUMBER)
            return (await repo.create_key(c, acct["id"], "test"))[1]

        typer.echo(_with_db(go))

    @app.command("api")
    def api() -> None:
        """Serve the HTTP API (CANARY_API_HOST:CANARY_API_PORT, default 127.0.0.1:8080)."""
        from services.api.__main__ import main

        main()
