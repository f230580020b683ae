"""Persistence for the onboarding bot: tables, repositories, migrations, and the sealing of secrets.

Modules: ``db`` (engines and sessions), ``models`` (tables), ``repositories`` (one per table),
``migrate`` (Alembic, run from code), ``fingerprint`` (keyed HMAC of keys), ``sealing`` (AES-GCM for the
retry outbox), ``timestamps`` (aware-UTC columns). Nothing here imports ``bot``, PTB or httpx.
"""
