"""Policy language properties: parse -> print -> parse is stable; adding an Allow statement never removes a
permission; a denied request stays denied when an unrelated statement is added."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault.iam import policy
from blockvault.iam.policy import (
    Combine,
    Compare,
    CompartmentTree,
    Location,
    Statement,
    Subject,
    Subjects,
    compile_policies,
    parse,
    render,
)

T = "ocid1.tenancy.oc1..root"
COMPS = {T: None, "c-a": T, "c-b": T, "c-ab": "c-a", "c-abc": "c-ab"}
NAMES = {T: "root", "c-a": "A", "c-b": "B", "c-ab": "AB", "c-abc": "ABC"}
TREE = CompartmentTree(T, COMPS, NAMES)
PATHS = [("A",), ("B",), ("A", "AB"), ("A", "AB", "ABC")]

_name = st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,11}", fullmatch=True).filter(
    lambda s: s.lower() not in policy._KEYWORDS
)
_text = st.text(st.characters(blacklist_characters="'\"\n\r", blacklist_categories=("Cs",)), max_size=12)
_variable = st.sampled_from(
    ["request.operation", "target.key.id", "request.kms-key.id", "target.compartment.name", "target.compartment.id"]
)
_compare = st.builds(
    Compare,
    variable=_variable,
    op=st.sampled_from(["=", "!="]),
    value=st.one_of(_text, st.from_regex(r"\*?[a-z]{1,5}\*?", fullmatch=True)),
    pattern=st.booleans(),
).filter(lambda c: not c.pattern or ("/" not in c.value and not any(ch.isspace() for ch in c.value)))
_condition = st.recursive(
    _compare,
    lambda inner: st.builds(
        Combine, st.sampled_from(["all", "any"]), st.lists(inner, min_size=1, max_size=3).map(tuple)
    ),
    max_leaves=6,
)
_subjects = st.one_of(
    st.builds(lambda ns: Subjects("group", tuple(ns)), st.lists(_name, min_size=1, max_size=3)),
    st.builds(
        lambda ns, ids: Subjects("group", tuple(ns), tuple(ids)),
        st.lists(_name, max_size=2),
        st.lists(st.from_regex(r"ocid1\.group\.oc1\.\.[a-z0-9]{4,8}", fullmatch=True), min_size=1, max_size=2),
    ),
    st.builds(lambda ns: Subjects("service", tuple(ns)), st.lists(_name, min_size=1, max_size=2)),
    st.just(Subjects("any-user")),
    st.just(Subjects("any-group")),
)
_location = st.one_of(
    st.just(Location(tenancy=True)),
    st.sampled_from(PATHS).map(lambda p: Location(path=p)),
    st.sampled_from(list(COMPS)[1:]).map(lambda c: Location(ocid=c)),
)
_statement = st.builds(
    Statement,
    subjects=_subjects,
    verb=st.sampled_from(policy.VERBS),
    resource_type=st.sampled_from([*policy.RESOURCE_TYPES, *policy.FAMILIES]),
    location=_location,
    condition=st.one_of(st.none(), _condition),
)
_who = st.one_of(
    st.builds(
        lambda g: Subject(user_id="u", group_ids=frozenset({"g"}), group_names=frozenset(x.lower() for x in g)),
        st.lists(_name, max_size=3),
    ),
    st.builds(lambda s: Subject(service=s), _name),
)
_perm = st.sampled_from(
    sorted({p for rt in policy.RESOURCE_TYPES for v in policy.VERBS for p in policy.permissions(v, rt)})
)
_compartment = st.sampled_from(list(COMPS))
_env = st.dictionaries(_variable, st.one_of(_text, st.from_regex(r"[a-z]{1,5}", fullmatch=True)), max_size=3)


@given(_statement)
@settings(max_examples=400)
def test_parse_print_parse_is_stable(statement: Statement) -> None:
    text = render(statement)
    parsed = parse(text)
    assert parsed == statement
    assert render(parsed) == text


def _allowed(statements: list[Statement], who: Subject, perm: str, comp: str, env: dict[str, str]) -> bool:
    idx = compile_policies(TREE, [("p", T, [render(s) for s in statements])])
    return idx.find(who, perm, comp, env) is not None


@given(st.lists(_statement, max_size=6), _statement, _who, _perm, _compartment, _env)
@settings(max_examples=300)
def test_adding_a_statement_never_removes_a_permission(
    base: list[Statement], extra: Statement, who: Subject, perm: str, comp: str, env: dict[str, str]
) -> None:
    if _allowed(base, who, perm, comp, env):
        assert _allowed([*base, extra], who, perm, comp, env)


@given(st.lists(_statement, max_size=6), _statement, _who, _perm, _compartment, _env)
@settings(max_examples=300)
def test_a_denied_request_stays_denied_when_an_unrelated_statement_is_added(
    base: list[Statement], extra: Statement, who: Subject, perm: str, comp: str, env: dict[str, str]
) -> None:
    unrelated = (
        not policy.names_subject(extra.subjects, who)
        or (perm not in extra.grants and policy.ANY_PERMISSION not in extra.grants)
        or TREE.resolve(extra.location, T) not in TREE.chain(comp)
    )
    if unrelated and not _allowed(base, who, perm, comp, env):
        assert not _allowed([*base, extra], who, perm, comp, env)
