"""The gateway's routing of incoming INVITEs on the real Postgres: a flood of INVITEs to numbers
nobody has costs at most one load of the directory per refresh interval; a number routed a
moment ago answers once the interval has passed."""

from __future__ import annotations

import asyncio
import uuid

from services.common import accounts, db
from services.lib import inbound, trunks
from services.lib.inbound import Accept
from services.telephony.inbound import DirectoryCache


async def test_refusals_are_cheap_and_new_numbers_route(stack, monkeypatch):
    monkeypatch.setenv("CANARY_ALLOW_PRIVATE_URLS", "1")  # a documentation address as the trunk
    pool = await db.create_pool(min_size=1, max_size=2)
    acct = "acct_" + uuid.uuid4().hex[:10]
    try:
        await pool.execute("INSERT INTO accounts (id, name, signing_secret) VALUES ($1, $1, 'whsec_test')", acct)
        await trunks.set_trunk(pool, acct, host="198.51.100.77", port=5060, password=None)
        await accounts.add_number(pool, acct, "+15557770001")
        cache = DirectoryCache(pool, refresh_s=60.0)
        refusals = await asyncio.gather(*(cache.route("198.51.100.77", f"+1555888{i:04d}") for i in range(200)),
                                        *(cache.route("203.0.113.1", "+15557770001") for _ in range(200)))
        assert {r.code for r in refusals} == {404, 403}
        assert cache.loads == 1  # 400 refused INVITEs, one snapshot
        await inbound.set_route(pool, acct, "+15557770001", inbound.check_changes({"voice_url": "https://a.example/"}))
        assert (await cache.route("198.51.100.77", "+15557770001")).code == 404  # within the interval: cached
        cache.refresh_s = 0.0
        found = await cache.route("198.51.100.77", "+15557770001")
        assert isinstance(found, Accept) and found.route.account_id == acct and cache.loads == 2
    finally:
        await pool.execute("DELETE FROM accounts WHERE id = $1", acct)
        await pool.close()
