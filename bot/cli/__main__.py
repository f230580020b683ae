"""``python -m bot.cli``: the same as the ``onboarding-bot`` command."""

from bot.cli.main import main

raise SystemExit(main())
