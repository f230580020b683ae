"""Clients of the outside APIs the bot depends on: OpenAI (verify a key) and DoubleTick (connect it)."""
