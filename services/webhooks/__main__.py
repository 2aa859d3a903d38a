import asyncio

from services.webhooks.service import main

asyncio.run(main())
