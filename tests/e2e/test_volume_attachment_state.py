"""Attachment state is visible on the volume itself (systemTags.blockvault), consistently in GET, list and etag."""

from __future__ import annotations

from typing import Any

import oci
import pytest
from helpers import Sdk

pytestmark = pytest.mark.e2e


def _state(volume: Any) -> dict[str, Any]:
    return dict(volume.system_tags["blockvault"])


def test_attachment_state_shows_on_the_volume(server: Any) -> None:
    sdk = Sdk(server)
    volume = sdk.create_volume(server.tenancy)
    assert _state(sdk.bs.get_volume(volume.id).data) == {"attachmentCount": 0, "isAttached": False}

    server.bv("volume", "attach", volume.id)
    got = sdk.bs.get_volume(volume.id)
    assert _state(got.data) == {"attachmentCount": 1, "isAttached": True}
    listed = [v for v in sdk.bs.list_volumes(compartment_id=server.tenancy).data if v.id == volume.id]
    assert _state(listed[0]) == {"attachmentCount": 1, "isAttached": True}
    # The etag a client read is the one if-match accepts.
    renamed = sdk.bs.update_volume(
        volume.id, oci.core.models.UpdateVolumeDetails(display_name="attached"), if_match=got.headers["etag"]
    ).data
    assert renamed.display_name == "attached"

    server.bv("volume", "detach", volume.id)
    assert _state(sdk.bs.get_volume(volume.id).data) == {"attachmentCount": 0, "isAttached": False}
