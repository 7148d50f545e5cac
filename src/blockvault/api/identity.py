"""Identity operations (/20160918/...): tenancy, regions, availability domains, compartments, users, API keys,
groups, memberships, policies (oci-wire.md §6).

Users, groups and policies live in the tenancy (their `compartmentId` is the tenancy); policies may be attached to
any compartment. Deletes are immediate (no DELETED tombstones are listed). Not implemented: dynamic groups,
compartment move/recover, identity work requests, user state and capabilities, tags (accepted, not stored).
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from blockvault.api import schemas
from blockvault.api.framework import Ctx, Reply, operation
from blockvault.blockstorage.service import NotImplementedYet
from blockvault.clock import to_wire
from blockvault.errors import InvalidArgument, MissingParameter, NotFound, PermissionDenied
from blockvault.iam.model import Group, Membership, Policy
from blockvault.iam.service import ApiKey


def _tenancy_id(ctx: Ctx) -> str:
    tenancy = ctx.app.identity.tenancy()
    return tenancy.id if tenancy else ""


def _in_tenancy(ctx: Ctx, compartment_id: str | None) -> str:
    """Users and groups live in the tenancy: a list or create naming another compartment is a bad parameter."""
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    if compartment_id != _tenancy_id(ctx):
        raise InvalidArgument(field="compartmentId", reason="users and groups live in the tenancy (root compartment)")
    return compartment_id


def _name_filter(ctx: Ctx, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    name = ctx.query("name")
    state = ctx.query("lifecycleState")
    if name:
        items = [i for i in items if i.get("name") == name]
    if state:
        items = [i for i in items if i.get("lifecycleState") == state]
    by = (ctx.query("sortBy") or "TIMECREATED").upper()
    order = (ctx.query("sortOrder") or "ASC").upper()
    if by not in ("TIMECREATED", "NAME") or order not in ("ASC", "DESC"):
        raise InvalidArgument(field="sortBy", reason="sortBy is TIMECREATED or NAME; sortOrder ASC or DESC")
    key = "timeCreated" if by == "TIMECREATED" else "name"
    return sorted(items, key=lambda x: (str(x.get(key) or "").lower(), x["id"]), reverse=order == "DESC")


def _group(g: Group) -> dict[str, Any]:
    return {
        "id": g.id,
        "compartmentId": g.tenancy_id,
        "name": g.name,
        "description": g.description,
        "lifecycleState": g.state,
        "timeCreated": to_wire(g.time_created),
        "freeformTags": {},
        "definedTags": {},
    }


def _membership(m: Membership, tenancy_id: str) -> dict[str, Any]:
    return {
        "id": m.id,
        "compartmentId": tenancy_id,
        "groupId": m.group_id,
        "userId": m.user_id,
        "lifecycleState": m.state,
        "timeCreated": to_wire(m.time_created),
    }


def _policy(p: Policy) -> dict[str, Any]:
    return {
        "id": p.id,
        "compartmentId": p.compartment_id,
        "name": p.name,
        "description": p.description,
        "statements": list(p.statements),
        "lifecycleState": p.state,
        "timeCreated": to_wire(p.time_created),
        "versionDate": p.version_date,
        "freeformTags": {},
        "definedTags": {},
    }


def _api_key(k: ApiKey, tenancy_id: str) -> dict[str, Any]:
    return {
        "keyId": f"{tenancy_id}/{k.user_id}/{k.fingerprint}",
        "keyValue": k.key_pem,
        "fingerprint": k.fingerprint,
        "userId": k.user_id,
        "timeCreated": to_wire(k.time_created),
        "lifecycleState": k.state,
    }


def _text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(field=name, reason="must be a string")
    return value


# --- tenancy, regions, ADs ---------------------------------------------------------------------------------------


def get_tenancy(ctx: Ctx) -> Reply:
    tenancy = ctx.app.identity.tenancy()
    if tenancy is None or tenancy.id != ctx.path["tenancy_id"]:
        raise NotFound(kind="tenancy", ident=str(ctx.path["tenancy_id"]))
    ctx.authorize("GetTenancy", target_id=tenancy.id)
    return Reply(schemas.tenancy(tenancy))


def list_regions(ctx: Ctx) -> Reply:
    ctx.authorize("ListRegions")
    return Reply([{"key": r.region.key.upper(), "name": r.region.name} for r in ctx.app.regions.values()], etag=False)


def list_region_subscriptions(ctx: Ctx) -> Reply:
    ctx.authorize("ListRegionSubscriptions")
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


# --- compartments ------------------------------------------------------------------------------------------------


def create_compartment(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "name", "description")
    parent = str(body["compartmentId"])
    ctx.authorize("CreateCompartment", compartment_id=parent)
    compartment = ctx.app.identity.create_compartment(parent, body["name"], str(body["description"]))
    return Reply(schemas.compartment(compartment, _tenancy_id(ctx)))


def _visible_compartment(ctx: Ctx, operation_name: str) -> Any:
    compartment = ctx.app.identity.get_compartment(str(ctx.path["compartment_id"]))
    ctx.authorize(operation_name, compartment_id=compartment.id, target_id=compartment.id)
    return compartment


def get_compartment(ctx: Ctx) -> Reply:
    compartment = _visible_compartment(ctx, "GetCompartment")
    return Reply(schemas.compartment(compartment, _tenancy_id(ctx)))


def list_compartments(ctx: Ctx) -> Reply:
    """`accessLevel` is accepted; every listed compartment is one the caller may inspect either way."""
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    subtree = (ctx.query("compartmentIdInSubtree") or "false").lower() == "true"
    found = ctx.app.identity.list_compartments(compartment_id, subtree=subtree)
    found = [c for c in found if c.state != "DELETED" or ctx.query("lifecycleState") == "DELETED"]
    shown = ctx.visible("ListCompartments", found, lambda c: (c.id, c.id, {}))
    return ctx.page(_name_filter(ctx, [schemas.compartment(c, _tenancy_id(ctx)) for c in shown]))


def update_compartment(ctx: Ctx) -> Reply:
    compartment = _visible_compartment(ctx, "GetCompartment")
    ctx.authorize("UpdateCompartment", compartment_id=compartment.id, target_id=compartment.id)
    ctx.check_if_match(schemas.compartment(compartment, _tenancy_id(ctx)), "compartment", compartment.id)
    body = ctx.json()
    updated = ctx.app.identity.update_compartment(compartment.id, _text(body, "name"), _text(body, "description"))
    return Reply(schemas.compartment(updated, _tenancy_id(ctx)))


def delete_compartment(ctx: Ctx) -> Reply:
    compartment = _visible_compartment(ctx, "GetCompartment")
    ctx.authorize("DeleteCompartment", compartment_id=compartment.id, target_id=compartment.id)
    ctx.check_if_match(schemas.compartment(compartment, _tenancy_id(ctx)), "compartment", compartment.id)

    def in_use(cid: str) -> bool:
        for region in ctx.app.regions.values():
            bs = region.blockstorage
            live = [v for v in bs.list_volumes("volume", cid, None, None, None) if v.state != "TERMINATED"]
            live += [v for v in bs.list_volumes("bootvolume", cid, None, None, None) if v.state != "TERMINATED"]
            vaults = [v for v in region.vault.list_vaults(cid) if v.state not in ("DELETED",)]
            if live or vaults:
                return True
        # Regions served by other processes of the deployment answer through their RegionClient (regions.md).
        peers = next(iter(ctx.app.regions.values())).blockstorage.peers
        return any(peers[name].compartment_in_use(cid) for name in ctx.app.remote_regions if name in peers)

    ctx.app.identity.delete_compartment(compartment.id, in_use=in_use)
    return Reply(None, status=204, etag=False)


# --- users and API keys ------------------------------------------------------------------------------------------


def create_user(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "name", "description")
    tenancy_id = _in_tenancy(ctx, str(body["compartmentId"]))
    ctx.authorize("CreateUser", compartment_id=tenancy_id)
    user = ctx.app.identity.create_user(body["name"], str(body["description"]))
    return Reply(schemas.user(user))


def _visible_user(ctx: Ctx, operation_name: str) -> Any:
    user = ctx.app.identity.get_user(str(ctx.path["user_id"]))
    ctx.authorize(operation_name, compartment_id=user.tenancy_id, target_id=user.id, **{"target.user.name": user.name})
    return user


def get_user(ctx: Ctx) -> Reply:
    return Reply(schemas.user(_visible_user(ctx, "GetUser")))


def list_users(ctx: Ctx) -> Reply:
    tenancy_id = _in_tenancy(ctx, ctx.query("compartmentId"))
    users = ctx.visible(
        "ListUsers", ctx.app.identity.list_users(), lambda u: (tenancy_id, u.id, {"target.user.name": u.name})
    )
    return ctx.page(_name_filter(ctx, [schemas.user(u) for u in users]))


def update_user(ctx: Ctx) -> Reply:
    user = _visible_user(ctx, "GetUser")
    ctx.authorize("UpdateUser", compartment_id=user.tenancy_id, target_id=user.id, **{"target.user.name": user.name})
    ctx.check_if_match(schemas.user(user), "user", user.id)
    updated = ctx.app.identity.update_user(user.id, _text(ctx.json(), "description"))
    return Reply(schemas.user(updated))


def delete_user(ctx: Ctx) -> Reply:
    user = _visible_user(ctx, "GetUser")
    ctx.authorize("DeleteUser", compartment_id=user.tenancy_id, target_id=user.id, **{"target.user.name": user.name})
    ctx.check_if_match(schemas.user(user), "user", user.id)
    if user.id == ctx.principal.user_id:
        raise InvalidArgument(field="userId", reason="a user cannot delete themself")
    ctx.app.identity.delete_user(user.id)
    return Reply(None, status=204, etag=False)


def upload_api_key(ctx: Ctx) -> Reply:
    user = _visible_user(ctx, "GetUser")
    body = ctx.json()
    ctx.require(body, "key")
    ctx.authorize("UploadApiKey", compartment_id=user.tenancy_id, target_id=user.id)
    fingerprint = ctx.app.identity.upload_api_key(user.id, str(body["key"]).encode())
    key = next(k for k in ctx.app.identity.list_api_keys(user.id) if k.fingerprint == fingerprint)
    return Reply(_api_key(key, user.tenancy_id))


def list_api_keys(ctx: Ctx) -> Reply:
    user = _visible_user(ctx, "GetUser")
    ctx.authorize("ListApiKeys", compartment_id=user.tenancy_id, target_id=user.id)
    return Reply([_api_key(k, user.tenancy_id) for k in ctx.app.identity.list_api_keys(user.id)], etag=False)


def delete_api_key(ctx: Ctx) -> Reply:
    user = _visible_user(ctx, "GetUser")
    ctx.authorize("DeleteApiKey", compartment_id=user.tenancy_id, target_id=user.id)
    ctx.app.identity.delete_api_key(user.id, str(ctx.path["fingerprint"]))
    return Reply(None, status=204, etag=False)


# --- groups and memberships --------------------------------------------------------------------------------------


def create_group(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "name", "description")
    tenancy_id = _in_tenancy(ctx, str(body["compartmentId"]))
    ctx.authorize("CreateGroup", compartment_id=tenancy_id)
    return Reply(_group(ctx.app.identity.create_group(body["name"], str(body["description"]))))


def _visible_group(ctx: Ctx, group_id: str, operation_name: str = "GetGroup") -> Group:
    group = ctx.app.identity.get_group(group_id)
    ctx.authorize(
        operation_name, compartment_id=group.tenancy_id, target_id=group.id, **{"target.group.name": group.name}
    )
    return group


def get_group(ctx: Ctx) -> Reply:
    return Reply(_group(_visible_group(ctx, str(ctx.path["group_id"]))))


def list_groups(ctx: Ctx) -> Reply:
    tenancy_id = _in_tenancy(ctx, ctx.query("compartmentId"))
    groups = ctx.visible(
        "ListGroups", ctx.app.identity.list_groups(), lambda g: (tenancy_id, g.id, {"target.group.name": g.name})
    )
    return ctx.page(_name_filter(ctx, [_group(g) for g in groups]))


def update_group(ctx: Ctx) -> Reply:
    group = _visible_group(ctx, str(ctx.path["group_id"]))
    _visible_group(ctx, group.id, "UpdateGroup")
    ctx.check_if_match(_group(group), "group", group.id)
    return Reply(_group(ctx.app.identity.update_group(group.id, _text(ctx.json(), "description"))))


def delete_group(ctx: Ctx) -> Reply:
    group = _visible_group(ctx, str(ctx.path["group_id"]))
    _visible_group(ctx, group.id, "DeleteGroup")
    ctx.check_if_match(_group(group), "group", group.id)
    ctx.app.identity.delete_group(group.id)
    return Reply(None, status=204, etag=False)


def add_user_to_group(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "userId", "groupId")
    from blockvault.errors import RelatedResourceNotFound

    tenancy_id = _tenancy_id(ctx)
    try:
        group = ctx.app.identity.get_group(str(body["groupId"]))
        user = ctx.app.identity.get_user(str(body["userId"]))
        variables = {"target.group.name": group.name, "target.user.name": user.name}
        ctx.authorize("GetGroup", compartment_id=tenancy_id, target_id=group.id, **variables)
        ctx.authorize("AddUserToGroup", compartment_id=tenancy_id, target_id=group.id, **variables)
    except (NotFound, PermissionDenied) as exc:
        raise RelatedResourceNotFound(field="userId or groupId", ident="") from exc
    return Reply(_membership(ctx.app.identity.add_user_to_group(user.id, group.id), tenancy_id))


def get_membership(ctx: Ctx) -> Reply:
    membership = ctx.app.identity.get_membership(str(ctx.path["membership_id"]))
    ctx.authorize("GetUserGroupMembership", compartment_id=_tenancy_id(ctx), target_id=membership.group_id)
    return Reply(_membership(membership, _tenancy_id(ctx)))


def list_memberships(ctx: Ctx) -> Reply:
    tenancy_id = _in_tenancy(ctx, ctx.query("compartmentId"))
    found = ctx.app.identity.list_memberships(ctx.query("userId"), ctx.query("groupId"))
    own = ctx.query("userId") == ctx.principal.user_id  # a user may always see their own groups
    shown = found if own else ctx.visible("ListUserGroupMemberships", found, lambda m: (tenancy_id, m.group_id, {}))
    return ctx.page([_membership(m, tenancy_id) for m in shown])


def remove_user_from_group(ctx: Ctx) -> Reply:
    membership = ctx.app.identity.get_membership(str(ctx.path["membership_id"]))
    tenancy_id = _tenancy_id(ctx)
    ctx.authorize("GetUserGroupMembership", compartment_id=tenancy_id, target_id=membership.group_id)
    ctx.authorize("RemoveUserFromGroup", compartment_id=tenancy_id, target_id=membership.group_id)
    ctx.app.identity.remove_membership(membership.id)
    return Reply(None, status=204, etag=False)


# --- policies ----------------------------------------------------------------------------------------------------


def create_policy(ctx: Ctx) -> Reply:
    body = ctx.json()
    ctx.require(body, "compartmentId", "name", "statements", "description")
    compartment_id = str(body["compartmentId"])
    ctx.authorize("CreatePolicy", compartment_id=compartment_id)
    pol = ctx.app.identity.create_policy(
        compartment_id, body["name"], str(body["description"]), body["statements"], _text(body, "versionDate")
    )
    return Reply(_policy(pol))


def _visible_policy(ctx: Ctx, operation_name: str = "GetPolicy") -> Policy:
    pol = ctx.app.identity.get_policy(str(ctx.path["policy_id"]))
    ctx.authorize(operation_name, compartment_id=pol.compartment_id, target_id=pol.id)
    return pol


def get_policy(ctx: Ctx) -> Reply:
    return Reply(_policy(_visible_policy(ctx)))


def list_policies(ctx: Ctx) -> Reply:
    compartment_id = ctx.query("compartmentId")
    if not compartment_id:
        raise MissingParameter(field="compartmentId")
    found = ctx.app.identity.list_policies(compartment_id)
    shown = ctx.visible("ListPolicies", found, lambda p: (p.compartment_id, p.id, {}))
    return ctx.page(_name_filter(ctx, [_policy(p) for p in shown]))


def update_policy(ctx: Ctx) -> Reply:
    pol = _visible_policy(ctx)
    ctx.authorize("UpdatePolicy", compartment_id=pol.compartment_id, target_id=pol.id)
    ctx.check_if_match(_policy(pol), "policy", pol.id)
    body = ctx.json()
    updated = ctx.app.identity.update_policy(
        pol.id,
        description=_text(body, "description"),
        statements=body.get("statements"),
        version_date=_text(body, "versionDate"),
    )
    return Reply(_policy(updated))


def delete_policy(ctx: Ctx) -> Reply:
    pol = _visible_policy(ctx)
    ctx.authorize("DeletePolicy", compartment_id=pol.compartment_id, target_id=pol.id)
    ctx.check_if_match(_policy(pol), "policy", pol.id)
    ctx.app.identity.delete_policy(pol.id)
    return Reply(None, status=204, etag=False)


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
    Route("/20160918/compartments/{compartment_id}", operation(update_compartment), methods=["PUT"]),
    Route("/20160918/compartments/{compartment_id}", operation(delete_compartment), methods=["DELETE"]),
    Route(
        "/20160918/compartments/{compartment_id}/actions/moveCompartment",
        _not_yet("Moving compartments"),
        methods=["POST"],
    ),
    Route("/20160918/users", operation(create_user, idempotent_post=True), methods=["POST"]),
    Route("/20160918/users", operation(list_users), methods=["GET"]),
    Route("/20160918/users/{user_id}", operation(get_user), methods=["GET"]),
    Route("/20160918/users/{user_id}", operation(update_user), methods=["PUT"]),
    Route("/20160918/users/{user_id}", operation(delete_user), methods=["DELETE"]),
    Route("/20160918/users/{user_id}/apiKeys", operation(upload_api_key, idempotent_post=True), methods=["POST"]),
    Route("/20160918/users/{user_id}/apiKeys", operation(list_api_keys), methods=["GET"]),
    Route("/20160918/users/{user_id}/apiKeys/{fingerprint}", operation(delete_api_key), methods=["DELETE"]),
    Route("/20160918/groups", operation(create_group, idempotent_post=True), methods=["POST"]),
    Route("/20160918/groups", operation(list_groups), methods=["GET"]),
    Route("/20160918/groups/{group_id}", operation(get_group), methods=["GET"]),
    Route("/20160918/groups/{group_id}", operation(update_group), methods=["PUT"]),
    Route("/20160918/groups/{group_id}", operation(delete_group), methods=["DELETE"]),
    Route("/20160918/userGroupMemberships", operation(add_user_to_group, idempotent_post=True), methods=["POST"]),
    Route("/20160918/userGroupMemberships", operation(list_memberships), methods=["GET"]),
    Route("/20160918/userGroupMemberships/{membership_id}", operation(get_membership), methods=["GET"]),
    Route("/20160918/userGroupMemberships/{membership_id}", operation(remove_user_from_group), methods=["DELETE"]),
    Route("/20160918/policies", operation(create_policy, idempotent_post=True), methods=["POST"]),
    Route("/20160918/policies", operation(list_policies), methods=["GET"]),
    Route("/20160918/policies/{policy_id}", operation(get_policy), methods=["GET"]),
    Route("/20160918/policies/{policy_id}", operation(update_policy), methods=["PUT"]),
    Route("/20160918/policies/{policy_id}", operation(delete_policy), methods=["DELETE"]),
    Route("/20160918/dynamicGroups", _not_yet("Dynamic groups"), methods=["GET", "POST"]),
]
