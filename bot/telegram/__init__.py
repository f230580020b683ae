"""The Telegram adapter (python-telegram-bot): where updates enter, the secret guard, the ChatPort implementation."""
