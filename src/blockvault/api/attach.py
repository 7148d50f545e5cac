"""Volume attachments (NBD exports): a blockvault extension, since OCI attaches volumes to instances.

    POST /20160918/volumes/{id}/actions/attach    {"transport": "plain"|"tls"|"tls-psk", "isReadOnly": bool,
                                                  "displayName": str,
                                                  "certificateSigningRequest": PEM (tls only, required)}
                                                  -> 200 attachment (+ "clientCertificate" and "caCertificate"
                                                     for tls; "psk" once for tls-psk, which is 501 on 3.11)
    POST /20160918/volumes/{id}/actions/detach    {"attachmentId": optional} -> 200 [detached attachments]
    GET  /20160918/volumes/{id}/attachments       [?lifecycleState=ATTACHED] -> 200 [attachments]
    (the same under /20160918/bootVolumes/{id}/...)

An attachment is {id, volumeId, exportName, uri, transport, pskIdentity, certificateFingerprint, lifecycleState,
isReadOnly, timeCreated}; the attach response alone carries "psk" (hex) or the PEM certificates. For tls the
client's private key never reaches the server: the caller sends a CSR and keeps the key (docs/design/nbd.md T2).
Operation names for authorization: AttachVolume, DetachVolume, ListVolumeAttachments (Boot variants for boot
volumes). See docs/design/decisions.md "Attachments".
"""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute, Route

from blockvault.api.framework import Ctx, Reply, operation
from blockvault.blockstorage.attachments import Attachment
from blockvault.clock import to_wire

_KIND = {"volumes": "volume", "bootVolumes": "bootvolume"}


def _uri(ctx: Ctx, attachment: Attachment) -> str | None:
    endpoint = getattr(ctx.request.app.state, "nbd_endpoint", None)
    if endpoint is None:
        return None
    scheme = "nbd" if attachment.transport == "plain" else "nbds"
    return f"{scheme}://{endpoint}/{attachment.export_name}"


def attachment_wire(ctx: Ctx, a: Attachment) -> dict[str, Any]:
    return {
        "id": a.id,
        "volumeId": a.volume_id,
        "compartmentId": a.compartment_id,
        "displayName": a.display_name,
        "lifecycleState": a.state,
        "exportName": a.export_name,
        "uri": _uri(ctx, a),
        "transport": a.transport,
        "pskIdentity": a.psk_identity,
        "certificateFingerprint": (
            "SHA256:" + a.credential.hex(":").upper() if a.transport == "tls" and a.credential else None
        ),
        "isReadOnly": a.is_read_only,
        "timeCreated": to_wire(a.time_created),
    }


def _routes(collection: str) -> list[BaseRoute]:
    kind = _KIND[collection]
    op = "Volume" if kind == "volume" else "BootVolume"

    def attach(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, str(ctx.path["volume_id"]))
        ctx.authorize(f"Attach{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        made = svc.attachments.attach(kind, volume.id, ctx.json())
        body = attachment_wire(ctx, made.attachment)
        if made.psk is not None:
            body["psk"] = made.psk.hex()
        if made.certificate is not None:
            body["clientCertificate"] = made.certificate.certificate_pem
            body["caCertificate"] = made.certificate.ca_pem
        return Reply(body, etag=False)

    def detach(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, str(ctx.path["volume_id"]))
        ctx.authorize(f"Detach{op}", compartment_id=volume.compartment_id, target_id=volume.id)
        body = ctx.json()
        done = svc.attachments.detach(kind, volume.id, body.get("attachmentId") or None)
        return Reply([attachment_wire(ctx, a) for a in done], etag=False)

    def list_(ctx: Ctx) -> Reply:
        svc = ctx.region.blockstorage
        volume = svc.get_volume(kind, str(ctx.path["volume_id"]))
        ctx.authorize(f"List{op}Attachments", compartment_id=volume.compartment_id, target_id=volume.id)
        items = svc.attachments.list_for(kind, volume.id, state=ctx.query("lifecycleState"))
        return ctx.page([attachment_wire(ctx, a) for a in items])

    base = f"/20160918/{collection}/{{volume_id}}"
    return [
        Route(f"{base}/actions/attach", operation(attach, idempotent_post=True), methods=["POST"]),
        Route(f"{base}/actions/detach", operation(detach), methods=["POST"]),
        Route(f"{base}/attachments", operation(list_), methods=["GET"]),
    ]


routes: list[BaseRoute] = [*_routes("volumes"), *_routes("bootVolumes")]
