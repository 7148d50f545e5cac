"""Identity operations needed now: tenancy, regions, availability domains, compartments, users, API keys.
Groups, memberships and policies come with the IAM issue (501 until then).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from blockvault.api import schemas
from blockvault.api.framework import Ctx, Reply, operation
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.clock import to_wire
from blockvault.errors import MissingParameter, NotFound


def get_tenancy(ctx: Ctx) -> Reply:
    tenancy = ctx.app.identity.tenancy()
    if tenancy is None or tenancy.id != ctx.path["tenancy_id"]:
        raise NotFound(kind="tenancy", ident=str(ctx.path["tenancy_id"]))
    ctx.authorize("GetTenancy", target_id=tenancy.id)
    return Reply(schemas.tenancy(tenancy))


def list_regions(ctx: Ctx) -> Reply:
    return Reply([{"key": r.region.key.upper(), "name": r.region.name} for r in ctx.app.regions.values()], etag=False)


def list_region_subscriptions(ctx: Ctx) -> Reply:
    tenancy = ctx.app.identity.tenancy()
    home = tenancy.home_region if tenancy else ctx.app.default_region
    return Reply(
        [
            {
                "regionKey": r.region.key.upper(),
                "regionName": r.region.name,
                "status": "READY",
                "isHomeRegion": r.region.name == home,
            }
            for r in ctx.app.regions.values()
        ],
        etag=False,
    )


def list_availability_domains(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    ctx.authorize("ListAvailabilityDomains", compartment_id=compartment_id)
    return Reply(
        [
            {
                "name": ad,
                "id": f"ocid1.availabilitydomain.oc1..{ad.split(':')[-1].lower()}",
                "compartmentId": compartment_id,
            }
            for ad in ctx.region.region.availability_domains
        ],
        etag=False,
    )


def create_compartment(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "name", "description")
    ctx.authorize("CreateCompartment", compartment_id=body["compartmentId"])
    compartment = ctx.app.identity.create_compartment(body["compartmentId"], body["name"], body["description"])
    tenancy = ctx.app.identity.tenancy()
    return Reply(schemas.compartment(compartment, tenancy.id if tenancy else ""))


def get_compartment(ctx: Ctx) -> Reply:
    compartment = ctx.app.identity.get_compartment(str(ctx.path["compartment_id"]))
    ctx.authorize("GetCompartment", target_id=compartment.id)
    tenancy = ctx.app.identity.tenancy()
    return Reply(schemas.compartment(compartment, tenancy.id if tenancy else ""))


def list_compartments(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    ctx.authorize("ListCompartments", compartment_id=compartment_id)
    tenancy = ctx.app.identity.tenancy()
    items = [
        schemas.compartment(c, tenancy.id if tenancy else "")
        for c in ctx.app.identity.list_compartments(compartment_id)
    ]
    return ctx.page(items)


def get_user(ctx: Ctx) -> Reply:
    user = ctx.app.identity.get_user(str(ctx.path["user_id"]))
    ctx.authorize("GetUser", target_id=user.id)
    return Reply(schemas.user(user))


def upload_api_key(ctx: Ctx) -> Reply:
    user = ctx.app.identity.get_user(str(ctx.path["user_id"]))
    body = ctx.json()
    ctx.require(body, "key")
    ctx.authorize("UploadApiKey", target_id=user.id)
    fingerprint = ctx.app.identity.upload_api_key(user.id, str(body["key"]).encode())
    return Reply(
        {
            "keyId": f"{user.tenancy_id}/{user.id}/{fingerprint}",
            "keyValue": body["key"],
            "fingerprint": fingerprint,
            "userId": user.id,
            "timeCreated": to_wire(ctx.app.domain_clock.now()),
            "lifecycleState": "ACTIVE",
        }
    )


def _not_yet(feature: str) -> Any:
    def handler(ctx: Ctx) -> Reply:
        raise NotImplementedYet(feature=feature)

    return operation(handler)


routes = [
    Route("/20160918/tenancies/{tenancy_id}", operation(get_tenancy), methods=["GET"]),
    Route("/20160918/regions", operation(list_regions), methods=["GET"]),
    Route(
        "/20160918/tenancies/{tenancy_id}/regionSubscriptions", operation(list_region_subscriptions), methods=["GET"]
    ),
    Route("/20160918/availabilityDomains", operation(list_availability_domains), methods=["GET"]),
    Route("/20160918/compartments", operation(create_compartment, idempotent_post=True), methods=["POST"]),
    Route("/20160918/compartments", operation(list_compartments), methods=["GET"]),
    Route("/20160918/compartments/{compartment_id}", operation(get_compartment), methods=["GET"]),
    Route("/20160918/users/{user_id}", operation(get_user), methods=["GET"]),
    Route("/20160918/users/{user_id}/apiKeys", operation(upload_api_key), methods=["POST"]),
    Route("/20160918/users", _not_yet("User management (the IAM issue)"), methods=["GET", "POST"]),
    Route("/20160918/groups", _not_yet("Groups (the IAM issue)"), methods=["GET", "POST"]),
    Route("/20160918/policies", _not_yet("Policies (the IAM issue)"), methods=["GET", "POST"]),
]
