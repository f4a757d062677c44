"""The consent to messaging says everything an IRB asks of it, in English and in Spanish.

`POINTS` is the list: each point, and the words that must be in the consent text a participant
reads (rendered from the approved template with the study's own values from study.toml, markup
removed) for it to be covered, per language. Taking a point out of either template fails its test.
The study values (hours, answer time, records retention) come from study.toml, not the template.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from messages.catalog import MESSAGES_ROOT
from messages.renderer import Button, demo_catalog
from messages.telegram_html import MAX_TEXT_LENGTH, parse_html, utf16_len
from study.protocol import EXAMPLE_PROTOCOL, Protocol, ProtocolError, StudySection, load_protocol
from tests.study_files import write_study_file
from tests.trial import Trial

REPO = Path(__file__).resolve().parent.parent
PROTOCOL = load_protocol(EXAMPLE_PROTOCOL)
LANGUAGES = ("en", "es")
STUDY = PROTOCOL.study


def _study(key: str, language: str) -> str:
    value: dict[str, str] = getattr(STUDY, key)
    return value[language]


# point -> language -> phrases that must all be in the consent text. A phrase given as
# ("study", key) is that study.toml [study] value in the language: the text must render it.
POINTS: dict[str, dict[str, list[Any]]] = {
    "what the chat is for, and that it goes into the study record": {
        "en": ["record here when you use your study cream", "goes to the study team", "part of your study record"],
        "es": ["anota cuándo se pone la crema del estudio", "le llega al equipo del estudio",
               "forma parte de su registro del estudio"],
    },
    "who reads messages and when (staff hours), and how soon they answer": {
        "en": ["The study team reads messages", ("study", "team_hours"), "and answers", ("study", "reply_within"),
               "Outside those hours, your message waits"],
        "es": ["El equipo del estudio lee los mensajes", ("study", "team_hours"), "y le responde",
               ("study", "reply_within"), "Fuera de ese horario, su mensaje espera"],
    },
    "not end-to-end encrypted, stored on Telegram's servers": {
        "en": ["not fully private", "not end-to-end encrypted", "stored on Telegram's servers"],
        "es": ["no es totalmente privado", "no tienen cifrado de extremo a extremo", "servidores de Telegram"],
    },
    "lock-screen previews and shared phones": {
        "en": ["lock screen", "Anyone who uses or sees your phone may read them", "turn off message previews"],
        "es": ["pantalla bloqueada", "Cualquier persona que use o vea su teléfono puede leerlos",
               "apagar la vista previa"],
    },
    "what they type is screened for warning words, which does not replace calling": {
        "en": ["checks what you type for warning words", "alerts the study team", "can miss things",
               "does not replace calling us"],
        "es": ["revisa lo que usted escribe para buscar palabras de alarma", "avisa al equipo del estudio",
               "no siempre encuentra todo", "No reemplaza una llamada"],
    },
    "not for emergencies": {
        "en": ["not for emergencies", f"In an emergency, call {PROTOCOL.safety.emergency_number}",
               f"call {STUDY.phone}"],
        "es": ["no es para emergencias", f"En una emergencia, llame al {PROTOCOL.safety.emergency_number}",
               f"llame al {STUDY.phone}"],
    },
    "pregnancy test results are collected in the chat (for those asked)": {
        "en": ["If the study asks you to do pregnancy tests", "send the results here"],
        "es": ["Si el estudio le pide hacerse pruebas de embarazo", "enviará los resultados por aquí"],
    },
    "how long records are kept, and deleting the chat does not delete them": {
        "en": ["The study keeps your study records, including what you send here", ("study", "records_kept"),
               "Deleting this chat in Telegram does not delete the study's records"],
        "es": ["El estudio guarda sus registros del estudio, incluido lo que usted envía aquí",
               ("study", "records_kept"), "Si usted borra este chat en Telegram, los registros del estudio no se borran"],
    },
    "no cost apart from their own data plan": {
        "en": ["costs you nothing", "apart from the data on your own phone plan"],
        "es": ["no le cuesta nada", "aparte de los datos de su propio plan de teléfono"],
    },
    "declining or stopping does not affect taking part in the study or their care": {
        "en": ["You do not have to agree", "If you say no, or stop the messages later",
               "your place in the study and the care you get stay the same"],
        "es": ["No tiene que aceptar", "Si dice que no, o si más adelante detiene los mensajes",
               "no cambia su participación en el estudio ni la atención médica que recibe"],
    },
    "how to pause messages": {
        "en": ["To pause messages, send /stop", "until you send /resume"],
        "es": ["Para pausar los mensajes, envíe /stop", "hasta que envíe /resume"],
    },
    "how to withdraw from messages, and from the study by telling the team": {
        "en": ["To stop using this chat for good, send /stop and tell the study team",
               "To leave the study, tell the study team", "at any time"],
        "es": ["Para dejar de usar este chat para siempre, envíe /stop y avísele al equipo del estudio",
               "Para salir del estudio, avísele al equipo del estudio", "en cualquier momento"],
    },
    "the question itself": {
        "en": ["Do you agree to get messages from the study through Telegram?"],
        "es": ["¿Está de acuerdo en recibir mensajes del estudio por Telegram?"],
    },
}


def consent_text(language: str, protocol: Protocol = PROTOCOL, *, root: Path = MESSAGES_ROOT,
                 **variables: Any) -> str:
    """The consent text as the participant reads it (plain text), from the approved template, with
    the variables the bot gives it (bot/handlers/onboarding.py)."""
    values = {**protocol.template_globals(), "applications_per_day": protocol.treatment.applications_per_day,
              "pregnancy_tests": protocol.pregnancy_tests.enabled, **variables}
    rendered = demo_catalog(protocol.template_globals(), LANGUAGES, root=root).render("consent", language, values,
                                           [[Button("agree", "c:a:x")], [Button("decline", "c:d:x")]])
    assert not rendered.draft, "the consent text must be the approved one"
    plain, _ = parse_html(rendered.text)
    return " ".join(plain.split())


def _phrase(item: Any, language: str) -> str:
    return _study(item[1], language) if isinstance(item, tuple) else item


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("point", list(POINTS))
def test_the_consent_text_covers(point: str, language: str) -> None:
    text = consent_text(language)
    missing = [_phrase(item, language) for item in POINTS[point][language] if _phrase(item, language) not in text]
    assert not missing, f"the {language} consent text does not say ({point}): {missing}"


def test_every_point_is_given_in_every_language() -> None:
    for point, phrases in POINTS.items():
        assert set(phrases) == set(LANGUAGES), point
        # The same study values in each language: the same content, not only similar words.
        keys = {lang: sorted(item[1] for item in items if isinstance(item, tuple)) for lang, items in phrases.items()}
        assert keys["en"] == keys["es"], point


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_study_values_come_from_study_toml(language: str) -> None:
    """Another site's hours, answer time and retention appear in the text, not the shipped ones."""
    other = {"team_hours": {"en": "every day from 7 am to 7 pm", "es": "todos los días de 7 a 19 horas"},
             "reply_within": {"en": "the same day", "es": "el mismo día"},
             "records_kept": {"en": "for 15 years", "es": "durante 15 años"}}
    protocol = PROTOCOL.model_copy(update={"study": STUDY.model_copy(update=other)})
    text = consent_text(language, protocol)
    for key, values in other.items():
        assert values[language] in text, key
        assert _study(key, language) not in text, f"{key}: the shipped value is written into the template"


@pytest.mark.parametrize("language", LANGUAGES)
def test_without_pregnancy_tests_the_consent_does_not_mention_them(language: str) -> None:
    text = consent_text(language, pregnancy_tests=False)
    assert "pregnancy" not in text and "embarazo" not in text
    with_tests = consent_text(language)
    assert len(with_tests) > len(text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_consent_text_is_one_telegram_message_even_with_the_longest_values(language: str) -> None:
    longest = {key: dict.fromkeys(LANGUAGES, "x" * 150) for key in ("team_hours", "reply_within", "records_kept")}
    protocol = PROTOCOL.model_copy(update={"study": STUDY.model_copy(update=longest)})
    text = consent_text(language, protocol, applications_per_day=6)
    assert utf16_len(text) <= MAX_TEXT_LENGTH - 500, "keep room: the consent is one message, one question"


def test_study_toml_needs_the_consent_values_in_every_language(tmp_path: Path) -> None:
    text = EXAMPLE_PROTOCOL.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("reply_within = "))
    no_spanish = text.replace(line, 'reply_within = { en = "within one working day" }')
    with pytest.raises(ProtocolError, match=r"reply_within: no text for 'es'"):
        load_protocol(write_study_file(tmp_path / "a", no_spanish))
    gone = text.replace(line + "\n", "")
    with pytest.raises(ProtocolError, match=r"study\.reply_within: Field required"):
        load_protocol(write_study_file(tmp_path / "b", gone))
    with pytest.raises(ValidationError, match="is not one of languages"):
        StudySection.model_validate({**STUDY.model_dump(), "records_kept": {**STUDY.records_kept, "fr": "x"}})
    with pytest.raises(ValidationError, match="keep it under"):
        StudySection.model_validate({**STUDY.model_dump(), "team_hours": {"en": "x" * 151, "es": "y"}})


async def test_a_person_opening_the_invite_reads_the_whole_consent(trial: Trial) -> None:
    """Through the real bot: the invitee gets the consent text with the study's values in one
    message, with Agree and Decline, and agreeing still works."""
    code = await trial.enroll("P001", language="es")
    user = trial.world.add_user(user_id=1001, first_name="Lucía")
    await user.send_text(f"/start {code}")
    consent = await user.next_bot_event()
    text = " ".join((consent.text or "").split())
    for point, phrases in POINTS.items():
        for item in phrases["es"]:
            assert _phrase(item, "es") in text, point
    assert consent.button_labels == ["✅ Sí, estoy de acuerdo", "No, gracias"]
    await user.press("✅ Sí, estoy de acuerdo")
    assert (await user.next_bot_event()).message_id == consent.message_id
    assert (await trial.participant("P001")).status == "active"
