"""`trialbot messages ...`: the study team's tools for the IRB-approved message catalog.

lint and review-packet read the files; status, diff and preview compare them with the approvals
ledger in the database (messages/ledger.py); approve writes an approval into the audit trail under
a named staff member's name (--as); sent reads the record of what was sent.
"""

from __future__ import annotations

import difflib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer

from bot.cli.arguments import study_id_option
from bot.operator import AsOption

messages_app = typer.Typer(help="The IRB-approved message catalog (templates, approvals, previews).",
                           no_args_is_help=True)

LanguageOption = Annotated[str | None, typer.Option("--language", "-l", help="One language, e.g. es (default: all the study's languages).")]
TemplateArgument = Annotated[str, typer.Argument(help="A template's id, e.g. reminder_application (see messages status).")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(message, fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _protocol():
    from bot.settings import Settings
    from study.protocol import ProtocolError, load_protocol

    try:
        return load_protocol(Settings().study_file)
    except ProtocolError as exc:
        raise _fail(str(exc)) from None


def _languages(language: str | None) -> list[str]:
    languages = list(_protocol().study.languages)
    if language is None:
        return languages
    if language not in languages:
        raise _fail(f"{language!r} is not one of the study's languages ({', '.join(languages)}); see study.toml")
    return [language]


def _study_globals() -> dict[str, object]:
    return _protocol().template_globals()


def _catalog():
    from messages.catalog import Catalog, CatalogError

    try:
        return Catalog.load()
    except CatalogError as exc:
        raise _fail(str(exc)) from None


def _ledger():
    """The approvals recorded in the database (read only; the schema must be up to date)."""
    from bot.cli.common import with_database
    from study import approvals

    async def read(db):
        async with db.transaction() as session:
            return await approvals.load(session)

    return with_database(read)


def _renderer(ledger=None):
    from messages.renderer import MessageCatalog

    return MessageCatalog(_catalog().root, allow_drafts=True, ledger=ledger if ledger is not None else _ledger(),
                          study_values=_study_globals())


def _known(catalog, template_id: str) -> None:
    if template_id not in catalog.templates:
        raise _fail(f"no template {template_id!r} in {catalog.root / 'catalog.toml'}")


@messages_app.command("lint")
def lint_command(language: LanguageOption = None) -> None:
    """Check every template: syntax, variables, Telegram's HTML and length limits, buttons, languages."""
    from messages.lint import lint

    catalog = _catalog()
    languages = _languages(language)
    findings = lint(catalog.root, languages, study_globals=_study_globals())
    for finding in findings:
        typer.echo(str(finding), err=True)
    count = len(catalog.all_ids(languages))
    if findings:
        typer.secho(f"messages lint: {len(findings)} problem(s) in {count} templates x {len(languages)} languages",
                    fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    typer.secho(f"messages lint: OK ({count} templates x {len(languages)} languages: {', '.join(languages)})",
                fg=typer.colors.GREEN)


@messages_app.command("status")
def status_command(language: LanguageOption = None) -> None:
    """Per template and language: approved, changed since approval (its text or the study values in
    it), never approved, or missing. Exits 1 unless every template the bot sends is approved."""
    from messages.ledger import State

    catalog = _catalog()
    renderer = _renderer()
    languages = _languages(language)
    not_ready = 0
    for template_id in catalog.all_ids(languages):
        for lang in languages:
            verdict = renderer.verdict(template_id, lang)
            known = template_id in catalog.templates
            where = template_id if known else f"{template_id} (not in catalog)"
            detail = ""
            if verdict.approval is not None:
                a = verdict.approval
                detail = f"  [{a.irb_ref}, {a.approved_on.isoformat()}, by {a.approved_by}]"
            if verdict.changed_values:
                detail += f"  changed: {', '.join(verdict.changed_values)}"
            color = typer.colors.GREEN if verdict.state is State.APPROVED else typer.colors.YELLOW
            if verdict.state is not State.APPROVED or not known:
                not_ready += 1
            typer.echo(f"{lang:<3} {where:<28} " + typer.style(verdict.state.value, fg=color) + detail)
    if not_ready:
        typer.secho(f"{not_ready} template file(s) not approved: trialbot run will refuse to start",
                    fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)
    typer.secho("all templates approved", fg=typer.colors.GREEN)


def unified_diff(catalog, ledger, template_id: str, language: str) -> list[str]:
    """The approved text (from the ledger) against the file as it is now."""
    path = catalog.path(template_id, language)
    current = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    approval = ledger.current(template_id, language)
    if approval is None:
        before, label = [], "(never approved)"
    else:
        before = approval.text.splitlines(keepends=True)
        label = f"approved {approval.irb_ref}, {approval.approved_on.isoformat()}"
    return list(difflib.unified_diff(before, current, fromfile=f"{language}/{template_id} {label}",
                                     tofile=f"{language}/{template_id} (current)"))


@messages_app.command("diff")
def diff_command(template_id: TemplateArgument, language: LanguageOption = None) -> None:
    """What changed in a template since it was approved (unified diff)."""
    catalog = _catalog()
    _known(catalog, template_id)
    ledger = _ledger()
    for lang in _languages(language):
        lines = unified_diff(catalog, ledger, template_id, lang)
        if not lines:
            typer.echo(f"{lang}/{template_id}: unchanged since approval")
            continue
        for line in lines:
            typer.echo(line.rstrip("\n"))


@messages_app.command("preview")
def preview_command(
    template_id: TemplateArgument,
    language: LanguageOption = None,
    participant: Annotated[str | None, study_id_option(
        "Show it as this participant would see it (their language and time zone), e.g. P001.")] = None,
    markup: Annotated[bool, typer.Option("--html", help="Show Telegram's HTML markup instead of the text.")] = False,
    variant: Annotated[str | None, typer.Option(help="One of the template's variants in catalog.toml instead of the samples, e.g. 'the day before'.")] = None,
) -> None:
    """A template as the participant would see it, with its sample values or one of its variants
    (drafts are marked DRAFT)."""
    from messages.catalog import CatalogError
    from messages.preview import preview_lines
    from messages.variants import load_variants

    catalog = _catalog()
    _known(catalog, template_id)
    chosen = None
    if variant is not None:
        try:
            listed = load_variants(catalog.root).get(template_id, ())
        except CatalogError as exc:
            raise _fail(str(exc)) from None
        chosen = next((v for v in listed if v.name == variant), None)
        if chosen is None:
            names = ", ".join(repr(v.name) for v in listed) or "none"
            raise _fail(f"{template_id!r} has no variant {variant!r} (its variants: {names})")
    zone = None
    if participant:
        person = _participant(participant)
        zone = person.timezone
        language = language or person.language
    languages = _languages(language)
    ledger = _ledger()
    for lang in languages:
        try:
            lines = preview_lines(catalog.root, template_id, lang, study_globals=_study_globals(), timezone=zone,
                                  markup=markup, variant=chosen, ledger=ledger)
        except Exception as exc:  # noqa: BLE001 - a broken template is reported, not a traceback
            raise _fail(f"{lang}/{template_id}: {exc}") from None
        if len(languages) > 1:
            typer.secho(f"--- {lang} ---", bold=True)
        for line in lines:
            typer.echo(line)


def _participant(study_id: str):
    from bot.cli.common import with_database
    from study import participants

    async def find(db):
        async with db.transaction() as session:
            return await participants.by_study_id(session, study_id)

    person = with_database(find)
    if person is None:
        raise _fail(f"No participant {study_id}.")
    return person


@messages_app.command("approve")
def approve_command(
    template_id: TemplateArgument,
    irb_ref: Annotated[str, typer.Option("--irb-ref", help="The IRB approval or amendment number, e.g. 'IRB 26-1042 amendment 3'.")],
    on: Annotated[str | None, typer.Option("--date", help="The date of the IRB approval, YYYY-MM-DD (default: today).")] = None,
    language: LanguageOption = None,
    as_: AsOption = None,
) -> None:
    """Record that the IRB approved the current text of a template, with the study values in it
    (phone, e-mail, study name...): an entry in the audit trail under your name (--as, a
    coordinator or the investigator). The bot sends exactly that, nothing else."""
    from bot.cli.common import actor_for, with_database
    from messages.lint import lint
    from study import approvals, roles

    catalog = _catalog()
    _known(catalog, template_id)
    try:
        when = date.fromisoformat(on) if on else datetime.now(UTC).date()
    except ValueError:
        raise _fail(f"--date: {on!r} is not a date like 2026-11-24") from None
    languages = _languages(language)
    findings = lint(catalog.root, languages, only=template_id, study_globals=_study_globals())
    if findings:
        for finding in findings:
            typer.echo(str(finding), err=True)
        raise _fail(f"Not approved: fix what lint found in {template_id!r} first.")
    study_values = _study_globals()

    async def approve(db):
        from messages.renderer import MessageCatalog

        done = []
        async with db.transaction() as session:
            actor = await actor_for(session, as_, roles.APPROVE_TEXT, "approve texts")
            current = MessageCatalog(catalog.root, ledger=await approvals.load(session), study_values=study_values)
            for lang in languages:
                verdict = current.verdict(template_id, lang)
                a = verdict.approval
                if verdict.approved and a is not None and a.irb_ref == irb_ref.strip() and a.approved_on == when:
                    done.append((lang, None))
                    continue
                done.append((lang, await approvals.approve(
                    session, template_id=template_id, language=lang, path=catalog.path(template_id, lang),
                    study_values=study_values, irb_ref=irb_ref, approved_on=when, actor=actor, now=datetime.now(UTC))))
        return done

    try:
        done = with_database(approve)
    except approvals.ApprovalRefused as exc:
        raise _fail(f"Not approved: {exc}") from None
    for lang, approval in done:
        if approval is None:
            typer.echo(f"{lang}/{template_id}: already approved ({irb_ref.strip()}, {when.isoformat()})")
            continue
        typer.secho(f"{lang}/{template_id}: approved ({approval.irb_ref}, {approval.approved_on.isoformat()}, "
                    f"sha256 {approval.template_sha256[:12]}..., by {approval.approved_by})", fg=typer.colors.GREEN)


@messages_app.command("review-packet")
def review_packet_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the HTML document.")] = Path("review-packet.html"),
    language: LanguageOption = None,
) -> None:
    """One HTML document for the IRB: every template in every language, rendered with samples and
    with each of its variants (every branch), its buttons, purpose and when it is sent, what changed
    since the last approval, and the red-flag screening's words with what each triggers."""
    from bot.cli.common import writable_folder
    from messages.review_packet import build_review_packet

    writable_folder(out.parent, "--out")
    if out.is_dir():
        raise _fail(f"--out: {out} is a folder; give the file to write, e.g. {out / 'review-packet.html'}")
    languages = _languages(language)
    protocol = _protocol()
    document = build_review_packet(_catalog().root, languages, study_globals=_study_globals(),
                                   study_name=protocol.study.name, screener=protocol.screener, ledger=_ledger())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(document, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    typer.echo(f"review packet written: {out} (open it in a browser; print to PDF if the IRB wants PDF)")


@messages_app.command("sent")
def sent_command(
    participant: Annotated[str | None, study_id_option("Only this participant, e.g. P001.")] = None,
    limit: Annotated[int, typer.Option(help="Without --participant: the newest this many.")] = 100,
) -> None:
    """What the bot sent: when, which template and approved version (hash), language, to whom."""
    from bot.cli.common import with_database
    from messages import sent

    async def rows(db):
        async with db.transaction() as session:
            if participant:
                return await sent.sent_to_participant(session, participant)
            return await sent.sent_all(session, limit=limit)

    found = with_database(rows)
    if found is None:
        raise _fail(f"No participant {participant}.")
    if not found:
        typer.echo("nothing sent yet")
    for row in found:
        draft = " DRAFT" if row.draft else ""
        typer.echo(f"{row.sent_at:%Y-%m-%d %H:%M:%S}Z  {row.recipient:<10} {row.language:<3} {row.template_id:<24} "
                   f"sha256:{row.template_hash[:12]} {row.via:<6} msg {row.telegram_message_id}{draft}")
