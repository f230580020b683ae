"""The Mini App replay count: one atomic upsert, so replicas racing on one initData count every use once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage.repositories import InitDataUseRepository
from storage.timestamps import utcnow


async def test_concurrent_uses_are_each_counted_once(sessions: async_sessionmaker[AsyncSession]) -> None:
    # Two repositories over one database stand for two replicas.
    replicas = [InitDataUseRepository(sessions), InitDataUseRepository(sessions)]
    expires = utcnow() + timedelta(hours=1)
    counts = await asyncio.gather(*(replicas[i % 2].use("a" * 64, expires) for i in range(8)))
    assert sorted(counts) == list(range(1, 9))
    assert await replicas[0].use("b" * 64, expires) == 1  # another initData starts at one


async def test_expired_rows_are_pruned(sessions: async_sessionmaker[AsyncSession]) -> None:
    repo = InitDataUseRepository(sessions)
    await repo.use("c" * 64, utcnow() - timedelta(seconds=1))
    await repo.use("d" * 64, utcnow() + timedelta(hours=1))
    assert await repo.prune() == 1
    assert await repo.use("c" * 64, utcnow() + timedelta(hours=1)) == 1  # forgotten
    assert await repo.use("d" * 64, utcnow() + timedelta(hours=1)) == 2  # kept
