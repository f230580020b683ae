"""The ``onboarding-bot`` command line: run, migrate, try mode, operator tools."""
