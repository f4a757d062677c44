"""A local stand-in for the Telegram Bot API, for tests and the demo.

`world.TelegramWorld` holds the simulated state (users, chats, updates, call records),
`server.BotApiServer` serves it over HTTP for python-telegram-bot, `chat.SimUser` acts as
a participant, and `terminal_chat` turns a terminal into a Telegram client.
"""
