"""Local stand-ins of the Telegram Bot API, OpenAI and DoubleTick, used by tests and the try-it mode.

They follow the documented behaviour of the real services (status codes, error bodies, limits); each
module cites the documentation it follows. Production code cannot tell them from the real services
except by base URL.
"""
