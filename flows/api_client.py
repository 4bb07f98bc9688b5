"""One way to talk to the Prefect API that holds the history and the stored summaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient


@contextmanager
def api_client(unavailable: type[Exception], holds: str) -> Iterator[SyncPrefectClient]:
    """A sync client; an HTTP failure becomes ``unavailable`` naming the API and what it
    ``holds`` (e.g. "the Sync History")."""
    try:
        with get_client(sync_client=True) as client:
            yield client
    except httpx.HTTPError as exc:
        url = PREFECT_API_URL.value() or "the ephemeral API"
        raise unavailable(f"the Prefect API that holds {holds} ({url}) failed: {exc}") from exc
