"""iam/policy.py: the parser (accepted grammar, errors naming the offending word), the printer, the evaluator
(verbs, families, locations, conditions) and the Authorizer over an in-memory directory."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from blockvault.errors import PermissionDenied
from blockvault.iam import cis, policy
from blockvault.iam.authz import Authorizer, Directory, Request
from blockvault.iam.model import Principal
from blockvault.iam.policy import CompartmentTree, PolicySyntaxError, Subject, parse, permissions, render

T = "ocid1.tenancy.oc1..root"
SEC, PROJX, DEV = "ocid1.compartment.oc1..sec", "ocid1.compartment.oc1..projx", "ocid1.compartment.oc1..dev"
K, K2 = "ocid1.key.oc1.iad.v.k1", "ocid1.key.oc1.iad.v.k2"
TREE = CompartmentTree(
    T,
    {T: None, SEC: T, PROJX: T, DEV: PROJX},
    {T: "root", SEC: "security-compartment", PROJX: "projx", DEV: "dev"},
)


# --- parser ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Allow group A to manage all-resources in tenancy",
        "allow GROUP A, B to USE keys IN compartment projx",
        "Allow group A, group B to read volume-family in compartment projx:dev",
        "Allow group id ocid1.group.oc1..x to inspect vaults in compartment id ocid1.compartment.oc1..sec",
        "Allow group 'Default'/'admins' to use volumes in tenancy",
        "Allow service blockstorage, objectstorage-us-ashburn-1 to use keys in tenancy",
        "Allow any-user to inspect volumes in tenancy where request.operation = 'ListVolumes'",
        "Allow any-group to read keys in tenancy where all {target.key.id = 'k', request.kms-key.id != 'x'}",
        "Allow group A to use key-delegate in tenancy where any {target.compartment.name = /proj*/, "
        "all {request.operation = 'CreateVolume', target.key.id = \"k\"}}",
        "Allow dynamic-group d to use volumes in tenancy",
        "Allow   group\n A   to  use   volumes  in  tenancy",
    ],
)
def test_accepted_statements_round_trip(text: str) -> None:
    st = parse(text)
    assert parse(render(st)) == st


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ("Allow group A to manages keys in tenancy", "'manages' at word 5"),
        ("Allow group A to use keyz in tenancy", "'keyz' at word 6"),
        ("Allow groupe A to use keys in tenancy", "'groupe' at word 2"),
        ("Deny group A to use keys in tenancy", "'Deny' at word 1"),
        ("Allow group A use keys in tenancy", "'use' at word 4"),
        ("Allow group A to use keys on tenancy", "'on' at word 7"),
        ("Allow group A to use keys in tenancy where x = 'y'", "'x'"),
        ("Allow group A to use keys in tenancy where target.key.id 'y'", "expected '=' or '!='"),
        ("Allow group A to use keys in tenancy where all {target.key.id = 'y'", "'<end of statement>'"),
        ("Allow group A to use keys in tenancy extra", "'extra'"),
        ("Allow group A to use keys in compartment A::B", "no empty part"),
        ("Allow group 'x'/'y' to use keys in tenancy", "'Default'"),
        ("", "non-empty"),
    ],
)
def test_bad_statements_name_the_offending_word(text: str, word: str) -> None:
    with pytest.raises(PolicySyntaxError) as exc:
        parse(text, field_name="statements[3]")
    assert word in str(exc.value)
    assert "statements[3]" in str(exc.value) or word == "non-empty"


def test_keywords_and_types_are_case_insensitive() -> None:
    assert parse("ALLOW GROUP a TO MANAGE Volume-Family IN TENANCY").resource_type == "volume-family"


# --- permissions -------------------------------------------------------------------------------------------------


def test_verbs_are_cumulative_for_every_type() -> None:
    for rtype in [*policy.RESOURCE_TYPES, *policy.FAMILIES]:
        sets = [permissions(v, rtype) for v in policy.VERBS]
        assert sets[0] <= sets[1] <= sets[2] <= sets[3], rtype


def test_documented_permission_sets() -> None:
    assert permissions("use", "key-delegate") == {"KEY_ASSOCIATE", "KEY_DISASSOCIATE"}
    assert "KEY_ENCRYPT" not in permissions("use", "key-delegate")
    assert {"KEY_ENCRYPT", "KEY_DECRYPT", "KEY_ASSOCIATE"} <= permissions("use", "keys")
    assert "KEY_CREATE" not in permissions("use", "keys")
    assert "VOLUME_CREATE" in permissions("manage", "volume-family")
    assert "VOLUME_CREATE" not in permissions("use", "volumes")
    assert "VOLUME_BACKUP_READ" in permissions("read", "volume-backups")
    assert policy.ANY_PERMISSION in permissions("manage", "all-resources")
    assert policy.ANY_PERMISSION not in permissions("use", "all-resources")
    assert policy.minimal_grant("KEY_ASSOCIATE") == ("use", "key-delegate")
    assert policy.minimal_grant("VOLUME_CREATE") == ("manage", "volumes")


# --- evaluation --------------------------------------------------------------------------------------------------

ALICE = Subject(user_id="u1", group_ids=frozenset({"g1"}), group_names=frozenset({"projx-admin-group"}))
BLOCKSTORAGE = Subject(service="blockstorage")


def _index(*statements: str, attached: str = T) -> policy.PolicyIndex:
    return policy.compile_policies(TREE, [("p", attached, statements)])


def test_location_covers_its_compartment_and_below() -> None:
    idx = _index("Allow group projx-admin-group to manage volumes in compartment projx")
    assert idx.find(ALICE, "VOLUME_CREATE", PROJX, {})
    assert idx.find(ALICE, "VOLUME_CREATE", DEV, {})
    assert not idx.find(ALICE, "VOLUME_CREATE", SEC, {})
    assert not idx.find(ALICE, "VOLUME_CREATE", T, {})


def test_nested_paths_and_relative_names() -> None:
    assert _index("Allow group projx-admin-group to manage volumes in compartment projx:dev").find(
        ALICE, "VOLUME_CREATE", DEV, {}
    )
    assert not _index("Allow group projx-admin-group to manage volumes in compartment projx:dev").find(
        ALICE, "VOLUME_CREATE", PROJX, {}
    )
    # a policy attached to projx names its children bare, and may not reach the tenancy
    assert _index("Allow group projx-admin-group to manage volumes in compartment dev", attached=PROJX).find(
        ALICE, "VOLUME_CREATE", DEV, {}
    )
    assert not _index("Allow group projx-admin-group to manage volumes in tenancy", attached=PROJX).find(
        ALICE, "VOLUME_CREATE", DEV, {}
    )
    assert _index(f"Allow group id g1 to manage volumes in compartment id {DEV}").find(ALICE, "VOLUME_CREATE", DEV, {})


def test_security_compartment_statements() -> None:
    idx = _index(
        f"Allow service blockstorage to use keys in compartment security-compartment where target.key.id = '{K}'",
        f"Allow group projx-admin-group to use key-delegate in compartment security-compartment "
        f"where target.key.id = '{K}'",
    )
    env = {"target.key.id": K}
    assert idx.find(ALICE, "KEY_ASSOCIATE", SEC, env)
    assert not idx.find(ALICE, "KEY_ENCRYPT", SEC, env)  # delegation never encrypts
    assert idx.find(BLOCKSTORAGE, "KEY_ENCRYPT", SEC, env)
    assert not idx.find(BLOCKSTORAGE, "KEY_ENCRYPT", SEC, {"target.key.id": K2})
    assert not idx.find(ALICE, "KEY_ASSOCIATE", SEC, {})  # variable absent -> false (R7.7)
    assert not idx.find(BLOCKSTORAGE, "KEY_ASSOCIATE", PROJX, env)


def test_conditions() -> None:
    env = {"request.operation": "CreateVolume", "target.compartment.name": "ProjX-Dev", "request.groups.id": ("a", "b")}
    cases = {
        "request.operation = 'createvolume'": True,
        "request.operation != 'CreateVolume'": False,
        "request.operation != 'DeleteVolume'": True,
        "target.compartment.name = /projx*/": True,
        "target.compartment.name = /*dev/": True,
        "target.compartment.name = /*x-d*/": True,
        "target.compartment.name = /*zzz*/": False,
        "request.groups.id = 'b'": True,
        "request.groups.id != 'b'": False,
        "target.key.id != 'x'": False,  # absent variable
        "all {request.operation = 'CreateVolume', target.key.id = 'x'}": False,
        "any {request.operation = 'CreateVolume', target.key.id = 'x'}": True,
    }
    for cond, expected in cases.items():
        st = parse(f"Allow any-user to use volumes in tenancy where {cond}")
        assert st.condition is not None
        assert policy.holds(st.condition, env) is expected, cond


def test_subjects() -> None:
    idx = _index("Allow any-user to inspect volumes in tenancy", "Allow any-group to read keys in tenancy")
    assert idx.find(BLOCKSTORAGE, "VOLUME_INSPECT", T, {})  # any-user covers service principals (R7.2)
    assert not idx.find(BLOCKSTORAGE, "KEY_READ", T, {})
    assert idx.find(ALICE, "KEY_READ", T, {})
    assert not _index("Allow dynamic-group d to read keys in tenancy").find(ALICE, "KEY_READ", T, {})


def test_unknown_compartment_is_never_allowed() -> None:
    assert not _index("Allow group projx-admin-group to manage all-resources in tenancy").find(
        ALICE, "VOLUME_CREATE", "ocid1.compartment.oc1..nope", {}
    )


# --- authorizer ----------------------------------------------------------------------------------------------------


class FakeDirectory:
    def __init__(self, *statements: str) -> None:
        self.statements = list(statements)
        self.gen = 0

    def generation(self) -> int:
        return self.gen

    def directory(self) -> Directory:
        return Directory(
            tenancy_id=T,
            tree=TREE,
            policies=(("p1", T, tuple(self.statements)),),
            user_names={"u1": "alice", "u2": "nobody"},
            user_groups={"u1": (("g1", "projx-admin-group"),)},
        )


def test_authorizer_enforces_and_recompiles_on_change() -> None:
    source = FakeDirectory("Allow group projx-admin-group to manage volume-family in compartment projx")
    authz = Authorizer(source)
    alice = Principal(T, "u1", "fp")
    authz.authorize(alice, Request("CreateVolume", PROJX))
    with pytest.raises(PermissionDenied):
        authz.authorize(alice, Request("CreateVolume", SEC))
    with pytest.raises(PermissionDenied):
        authz.authorize(Principal("ocid1.tenancy.oc1..other", "u1", "fp"), Request("CreateVolume", PROJX))
    with pytest.raises(PermissionDenied):
        authz.authorize(alice, Request("SomethingNew", PROJX))  # unknown operations need manage all-resources
    source.statements.append("Allow group projx-admin-group to manage all-resources in tenancy")
    source.gen += 1
    authz.authorize(alice, Request("SomethingNew", SEC))


def test_self_service_and_free_operations() -> None:
    authz = Authorizer(FakeDirectory())
    nobody = Principal(T, "u2", "fp")
    authz.authorize(nobody, Request("GetUser", T, "u2"))
    authz.authorize(nobody, Request("ListAvailabilityDomains", T))
    with pytest.raises(PermissionDenied):
        authz.authorize(nobody, Request("GetUser", T, "u1"))


def test_explain_names_missing_permissions_with_statements() -> None:
    authz = Authorizer(FakeDirectory("Allow group projx-admin-group to inspect volumes in compartment projx"))
    decision = authz.explain("u1", Request("CreateVolume", DEV))
    assert not decision.allowed
    assert [m.permission for m in decision.missing] == ["VOLUME_CREATE"]
    assert decision.missing[0].statement == "Allow group projx-admin-group to manage volumes in compartment projx:dev"
    d = authz.key_delegation(
        Principal(T, "u1", ""), operation="CreateVolume", key_id=K, key_compartment_id=SEC, vault_id="v"
    )
    assert {m.statement for m in d.missing} == {
        f"Allow group projx-admin-group to use key-delegate in compartment security-compartment "
        f"where target.key.id = '{K}'",
        f"Allow service blockstorage to use keys in compartment security-compartment where target.key.id = '{K}'",
    }
    # the suggestions, once added, grant exactly what was missing
    source = FakeDirectory(*{m.statement for m in d.missing})
    again = Authorizer(source).key_delegation(
        Principal(T, "u1", ""), operation="CreateVolume", key_id=K, key_compartment_id=SEC, vault_id="v"
    )
    assert again.allowed


# --- CIS -----------------------------------------------------------------------------------------------------------


def test_cis_findings() -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    findings = cis.check(
        now=now,
        tenancy_id=T,
        volumes=[
            cis.VolumeInfo("v1", "volume", PROJX, None, "r"),
            cis.VolumeInfo("b1", "bootvolume", PROJX, None, "r"),
            cis.VolumeInfo("v2", "volume", SEC, K, "r"),
        ],
        keys=[
            cis.KeyInfo(K, "vault", SEC, "ENABLED", now - timedelta(days=400), "r"),
            cis.KeyInfo(K2, "vault", SEC, "ENABLED", now - timedelta(days=10), "r"),
        ],
        vaults=[cis.VaultInfo("vault", SEC, "r")],
        policies=[
            cis.PolicyInfo("p1", "admins", T, ["Allow group Administrators to manage all-resources in tenancy"]),
            cis.PolicyInfo("p2", "broad", T, ["Allow group ops to manage keys in tenancy"]),
            cis.PolicyInfo("p3", "scoped", T, ["Allow group ops to manage keys in compartment projx"]),
        ],
    )
    got = {(f.recommendation, f.resource_id) for f in findings}
    assert got == {("5.2.1", "v1"), ("5.2.2", "b1"), ("4.16", K), ("R7.19", "vault"), ("1.x", "p2")}


def test_volume_family_does_not_carry_backup_copy_but_the_member_type_does() -> None:
    from blockvault.iam.policy import permissions

    assert "VOLUME_BACKUP_COPY" not in permissions("manage", "volume-family")
    assert "BOOT_VOLUME_BACKUP_COPY" not in permissions("manage", "volume-family")
    assert "VOLUME_BACKUP_COPY" in permissions("manage", "volume-backups")
    assert "VOLUME_BACKUP_CREATE" in permissions("manage", "volume-family")
