"""A local stand-in for the Telegram Bot API, for tests and the demo.

`world.TelegramWorld` holds the simulated state (users, chats, updates, files, call records),
`server.BotApiServer` serves it over HTTP for python-telegram-bot, `chat.SimUser` acts as
a participant, `media` builds test images and knows Telegram's photo sizes, and
`terminal_chat` turns a terminal into a Telegram client.
"""
