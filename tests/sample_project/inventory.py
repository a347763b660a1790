"""The sample project's code: a service that reads a table from a DynamoDB-like API."""

from __future__ import annotations

import outlast

ENDPOINT = "dynamodb.us-east-1.amazonaws.com"


class Inventory:
    """Counts items through an outlast client (resolution, failover and retries inside)."""

    def __init__(self, port: int) -> None:
        self.url = f"http://{ENDPOINT}:{port}/items"

    def count(self) -> int:
        with outlast.Client() as client:
            response = client.get(self.url)
            response.raise_for_status()
            return int(response.text)

    async def acount(self) -> int:
        async with outlast.AsyncClient() as client:
            response = await client.get(self.url)
            response.raise_for_status()
            return int(response.text)
