"""The web chat of the demo: a local page that plays Telegram's client (see server.py)."""

from sandbox.web.server import DemoControls, Persona, WebChat

__all__ = ["DemoControls", "Persona", "WebChat"]
