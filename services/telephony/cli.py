"""CLI commands of the telephony service (registered by services.cli).

    canary-voice trunks set --account NAME --host H [--port 5060] [--transport udp|tcp|tls]
                            [--username U] [--password-stdin | --clear-password]
                            [--caller-id +E164] [--allow-from +PREFIX ...] [--digest-realm R]
                            [--allow-legacy-digest] [--allow-foreign-hops]
    canary-voice trunks show --account NAME [--json]
    canary-voice trunks delete --account NAME
    canary-voice sandbox callee add NUMBER [--account NAME] [--ring 1s] [--after 2s] [--press "1234#"]
                                    [--say "Hello?"] [--voicemail "greeting text" [--beep]] [--say-voice V] [--hangup-after 20s] [--no-answer]
    canary-voice sandbox callee list [--account NAME]
    canary-voice sandbox callee remove NUMBER [--account NAME]
    canary-voice sandbox numbers
    canary-voice sandbox call-in --from +E164 --to NUMBER [--account NAME] [--press 1] [--after 1s]
                                 [--say "text"] [--hangup-after 20s]

A trunk password is only ever read from stdin (never an argument: it would land in the
shell history and the process list) and is never printed.
"""

from __future__ import annotations

import sys
from typing import Any, Awaitable, Callable, Optional

import typer

from services.common.clitools import fail, with_db


def _fail(msg: str) -> None:
    fail(msg)


def _with_db(fn: Callable[[Any], Awaitable[Any]]) -> Any:
    from services.common.accounts import AccountError
    from services.lib.trunks import TrunkError

    return with_db(fn, expected=(TrunkError, AccountError))


async def _account_id(conn: Any, name: str | None) -> str:
    """The id of the named account ('' when no name: every account)."""
    from services.common.accounts import AccountError, get_account

    if not name:
        return ""
    acct = await get_account(conn, name)
    if acct is None:
        raise AccountError("account_not_found", f"no account named {name!r}")
    return acct["id"]


def _print_trunk(t: dict[str, Any], as_json: bool = False) -> None:
    from services.common.accounts import iso

    view = {**t, "created_at": iso(t["created_at"]), "updated_at": iso(t["updated_at"])}
    if as_json:
        import orjson

        typer.echo(orjson.dumps(view, option=orjson.OPT_INDENT_2).decode())
        return
    for k in ("host", "port", "transport", "username", "has_password", "caller_id", "allowed_from_prefixes",
              "digest_realm", "allow_legacy_digest", "allow_foreign_hops", "srtp", "updated_at"):
        v = view[k]
        if isinstance(v, bool):
            v = "yes" if v else "no"
        elif isinstance(v, list):
            v = ", ".join(v) or "-"
        elif k == "port" and v is None:
            v = "none: located by DNS (NAPTR, SRV)"
        typer.echo(f"{k + ':':23}{'-' if v is None else v}")


def _seconds(s: float | None) -> str:
    return "-" if s is None else f"{s:g}s"


def register(app: typer.Typer) -> None:
    from services.lib import trunks as repo

    trunks_app = typer.Typer(help="SIP trunk of an account (where its live calls go).", no_args_is_help=True)
    sandbox_app = typer.Typer(help="The sandbox carrier: magic numbers and scripted callees.", no_args_is_help=True)
    callee_app = typer.Typer(help="Scripted sandbox callees: what a sandbox number does when called.",
                             no_args_is_help=True)
    app.add_typer(trunks_app, name="trunks")
    app.add_typer(sandbox_app, name="sandbox")
    sandbox_app.add_typer(callee_app, name="callee")

    @trunks_app.command("set")
    def trunks_set(
        account: str = typer.Option(..., "--account", help="account name"),
        host: str = typer.Option(..., "--host", help="trunk hostname or IP address"),
        port: Optional[int] = typer.Option(None, "--port", help="trunk SIP port (default: located by DNS, NAPTR/SRV, else 5060; 5061 for tls)"),
        transport: str = typer.Option("udp", "--transport", help="SIP transport (udp, tcp or tls)"),
        username: Optional[str] = typer.Option(None, "--username", help="digest auth user name"),
        password_stdin: bool = typer.Option(False, "--password-stdin",
                                            help="read the digest password from stdin (first line)"),
        clear_password: bool = typer.Option(False, "--clear-password", help="remove the stored password"),
        caller_id: Optional[str] = typer.Option(None, "--caller-id",
                                                help="fixed caller id (E.164) presented on every call,"
                                                     " or the fallback when --allow-from does not match"),
        allow_from: Optional[list[str]] = typer.Option(None, "--allow-from",
                                                       help="allowed caller id prefix, e.g. +1555 (repeatable)"),
        digest_realm: Optional[str] = typer.Option(None, "--digest-realm",
                                                   help="answer only this realm's digest challenges"),
        allow_legacy_digest: bool = typer.Option(False, "--allow-legacy-digest",
                                                 help="answer challenges without qop (RFC 2069)"),
        allow_foreign_hops: bool = typer.Option(False, "--allow-foreign-hops",
                                                help="follow a Record-Route/Contact off the trunk's addresses"),
        srtp: str = typer.Option("off", "--srtp", help="SRTP with SDES keys: off, optional or required"
                                 " (needs --transport tls)"),
    ) -> None:
        """Create or replace the account's SIP trunk (the stored password is kept unless given or cleared;
        a new host needs it again: --password-stdin or --clear-password)."""
        if password_stdin and clear_password:
            _fail("give at most one of --password-stdin and --clear-password")
        password: Any = repo.KEEP
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                _fail("--password-stdin: no password on stdin")
        elif clear_password:
            password = None

        async def go(c: Any) -> dict:
            return await repo.set_trunk(c, await _account_id(c, account), host=host,
                                        port=port, transport=transport,
                                        username=username, password=password, caller_id=caller_id,
                                        allowed_from_prefixes=allow_from or [], digest_realm=digest_realm,
                                        allow_legacy_digest=allow_legacy_digest,
                                        allow_foreign_hops=allow_foreign_hops, srtp=srtp)

        _print_trunk(_with_db(go))

    @trunks_app.command("show")
    def trunks_show(account: str = typer.Option(..., "--account", help="account name"),
                    as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
        """Show the account's SIP trunk (the password is never shown)."""
        async def go(c: Any) -> dict | None:
            return await repo.get_trunk(c, await _account_id(c, account))

        t = _with_db(go)
        if t is None:
            _fail(f"account {account!r} has no SIP trunk")
        _print_trunk(t, as_json)

    @trunks_app.command("delete")
    def trunks_delete(account: str = typer.Option(..., "--account", help="account name")) -> None:
        """Remove the account's SIP trunk (its live calls then fail until one is set)."""
        async def go(c: Any) -> bool:
            return await repo.delete_trunk(c, await _account_id(c, account))

        if not _with_db(go):
            _fail(f"account {account!r} has no SIP trunk")
        typer.echo("deleted")

    @callee_app.command("add")
    def callee_add(
        number: str = typer.Argument(..., help="the sandbox number (E.164)"),
        account: Optional[str] = typer.Option(None, "--account", help="only for this account (default: every account)"),
        ring: str = typer.Option("1s", "--ring", help="ring this long, then answer"),
        after: str = typer.Option("0s", "--after", help="after answering, wait this long, then press/say"),
        press: str = typer.Option("", "--press", help="DTMF keys to press, e.g. 1234#"),
        say: str = typer.Option("", "--say", help="words to say (for speech gather)"),
        say_voice: Optional[str] = typer.Option(None, "--say-voice", help="voice for --say"),
        hangup_after: Optional[str] = typer.Option(None, "--hangup-after", help="hang up this long after answering"),
        no_answer: bool = typer.Option(False, "--no-answer", help="ring until the caller's ring timeout"),
        voicemail: str = typer.Option("", "--voicemail", help="a voicemail: this greeting on answer, then it listens"),
        beep: bool = typer.Option(False, "--beep", help="the voicemail beeps after its greeting"),
    ) -> None:
        """Attach a scripted callee to a sandbox number (replaces an existing one). Durations: 2s, 500ms, 1.5."""
        async def go(c: Any) -> tuple[dict, bool]:
            script = repo.callee_script(ring=ring, answer=not no_answer, after=after, press=press, say=say,
                                        say_voice=say_voice, hangup_after=hangup_after, voicemail=voicemail,
                                        beep=beep)
            return await repo.set_callee(c, number, await _account_id(c, account), script)

        row, created = _with_db(go)
        typer.echo(f"{'added' if created else 'replaced'} {row['number']} ({account or 'every account'})")

    @sandbox_app.command("call-in")
    def call_in(
        from_: str = typer.Option(..., "--from", help="the caller's number (E.164)"),
        to: str = typer.Option(..., "--to", help="the account's number it dials (with a voice_url or flow_id)"),
        account: str = typer.Option("dev", "--account", help="account name"),
        press: str = typer.Option("", "--press", help="DTMF keys the caller presses after the answer, e.g. 1"),
        after: str = typer.Option("1s", "--after", help="wait this long after the answer, then press/say"),
        say: str = typer.Option("", "--say", help="words the caller says (for speech gather)"),
        hangup_after: Optional[str] = typer.Option(None, "--hangup-after", help="hang up this long after the answer"),
    ) -> None:
        """A sandbox caller dials one of the account's numbers: the call comes in (direction inbound) and runs
        the number's flow; prints the call id (`canary-voice calls history CALL_ID` shows what happened)."""
        from events import topics
        from services.common.kafka import make_producer, publish
        from services.lib import inbound

        async def go(c: Any) -> str:
            script = repo.callee_script(ring=0.2, after=after, press=press, say=say, hangup_after=hangup_after)
            try:
                env = await inbound.sandbox_call(c, await _account_id(c, account), to, from_, script)
            except inbound.RouteError as exc:
                _fail(f"{exc.field}: {exc.message}" if exc.field else exc.message)
            producer = make_producer()
            await producer.start()
            try:
                await publish(producer, topics.events(), env)
            finally:
                await producer.stop()
            return env.call_id

        typer.echo(_with_db(go))

    @callee_app.command("list")
    def callee_list(account: Optional[str] = typer.Option(None, "--account", help="only this account's callees")
                    ) -> None:
        """List scripted callees."""
        async def go(c: Any) -> list:
            return await repo.list_callees(c, None if account is None else await _account_id(c, account))

        rows = _with_db(go)
        if not rows:
            typer.echo("no scripted callees")
            return
        typer.echo(f"{'NUMBER':16} {'ACCOUNT':20} SCRIPT")
        for r in rows:
            s = r["script"]
            parts = ["no answer" if not s.get("answer", True) else f"ring {_seconds(s.get('ring', 1.0))}"]
            if s.get("after"):
                parts.append(f"after {_seconds(s['after'])}")
            if s.get("press"):
                parts.append(f"press {s['press']}")
            if s.get("say"):
                parts.append(f"say {s['say']!r}")
            if s.get("voicemail"):
                parts.append(f"voicemail {s['voicemail']!r}{' + beep' if s.get('beep') else ''}")
            if s.get("hangup_after") is not None:
                parts.append(f"hang up after {_seconds(s['hangup_after'])}")
            who = r.get("account_name") or (r["account_id"] or "*")
            typer.echo(f"{r['number']:16} {who:20} {', '.join(parts)}")

    @callee_app.command("remove")
    def callee_remove(number: str = typer.Argument(..., help="the sandbox number"),
                      account: Optional[str] = typer.Option(None, "--account",
                                                            help="the account it was added for (default: every)")
                      ) -> None:
        """Remove a scripted callee."""
        async def go(c: Any) -> bool:
            return await repo.remove_callee(c, number, await _account_id(c, account))

        if not _with_db(go):
            _fail(f"no scripted callee {number} for {account or 'every account'}")
        typer.echo("removed")

    @sandbox_app.command("numbers")
    def sandbox_numbers() -> None:
        """The sandbox's magic numbers and what each does."""
        for number, what in repo.MAGIC_NUMBERS.items():
            typer.echo(f"{number}  {what}")
        typer.echo("any other number: answers after 1 s and listens until we hang up"
                   " (unless a scripted callee is attached: `canary-voice sandbox callee add`)")
