"""One way to talk to the Prefect API that holds the history and the stored summaries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import httpx
from prefect.client.orchestration import get_client
from prefect.client.schemas.sorting import ArtifactSort
from prefect.settings import PREFECT_API_URL

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter


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


# The API caps every page at PREFECT_SERVER_API_DEFAULT_LIMIT (200 by default).
PAGE = 200


def read_all_artifacts(client: SyncPrefectClient, artifact_filter: ArtifactFilter) -> Iterator:
    """Every artifact the filter matches, page by page (newest id first within the pages)."""
    offset = 0
    while True:
        page = client.read_artifacts(
            artifact_filter=artifact_filter, sort=ArtifactSort.ID_DESC, limit=PAGE, offset=offset
        )
        yield from page
        if len(page) < PAGE:
            return
        offset += PAGE
