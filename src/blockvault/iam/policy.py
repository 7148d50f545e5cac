"""OCI policy language: a pure parser, printer and evaluator (oci-behaviour.md §7, docs/design/iam.md).

    statement  := "Allow" subjects "to" verb resource-type "in" location ["where" condition]
    subjects   := "group" group ("," ["group"] group)*          group := name | 'name' | "id" ocid
                | "service" name ("," ["service"] name)*
                | "dynamic-group" ... (parsed, never matches: blockvault has no instance principals)
                | "any-user" | "any-group"
    verb       := "inspect" | "read" | "use" | "manage"
    location   := "tenancy" | "compartment" "id" ocid | "compartment" name[":"name]*
    condition  := "all" "{" condition ("," condition)* "}" | "any" "{" ... "}" | variable ("=" | "!=") value
    value      := 'text' | "text" | /pattern/ | word            pattern: /X*/ prefix, /*X/ suffix, /*X*/ contains

Keywords, verbs, resource types and condition values match case-insensitively (R7.1, R7.6). A statement that does
not parse raises `PolicySyntaxError` naming the offending word and its position (1-based). Nothing here does I/O:
the caller resolves compartment names to OCIDs through a `CompartmentTree` it builds from its own records.

Evaluation (R7.3-R7.7): a check (subject, permission, compartment chain, variables) is allowed iff some statement
(1) names the subject, (2) grants the permission through its verb and resource type, (3) is located at the target's
compartment or one of its ancestors, and (4) has no condition or a condition that is true. A condition whose
variable the request does not carry is false, for "=" and "!=" alike (R7.7). There are no Deny statements, so
adding a statement can only add permissions.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Union

from blockvault.errors import InvalidArgument

# --- permissions -------------------------------------------------------------------------------------------------

VERBS = ("inspect", "read", "use", "manage")  # cumulative: each includes the ones before it (R7.3)

# resource type -> the permissions each verb ADDS to the verb before it (R7.10, R7.11, R7.13, R7.23-R7.25; the
# identity types follow OCI's IAM policy reference). `volumes` also carries the BOOT_VOLUME_* permissions because
# OCI governs boot volumes through `volumes`; `boot-volumes` is blockvault's narrower type for boot volumes only.
_VOLUME = ("VOLUME_INSPECT",), (), ("VOLUME_UPDATE", "VOLUME_WRITE"), ("VOLUME_CREATE", "VOLUME_DELETE", "VOLUME_MOVE")
_BOOT = (
    ("BOOT_VOLUME_INSPECT",),
    (),
    ("BOOT_VOLUME_UPDATE", "BOOT_VOLUME_WRITE"),
    ("BOOT_VOLUME_CREATE", "BOOT_VOLUME_DELETE", "BOOT_VOLUME_MOVE"),
)


def _backup_like(prefix: str) -> tuple[tuple[str, ...], ...]:
    return (
        (f"{prefix}_INSPECT",),
        (f"{prefix}_READ",),
        (f"{prefix}_COPY", f"{prefix}_UPDATE"),
        (f"{prefix}_CREATE", f"{prefix}_DELETE", f"{prefix}_MOVE"),
    )


def _inspect_manage(prefix: str, *, use: Sequence[str] = ()) -> tuple[tuple[str, ...], ...]:
    return (
        (f"{prefix}_INSPECT",),
        (),
        tuple(use),
        (f"{prefix}_CREATE", f"{prefix}_UPDATE", f"{prefix}_DELETE", f"{prefix}_MOVE"),
    )


RESOURCE_TYPES: dict[str, tuple[tuple[str, ...], ...]] = {
    # Vault (R7.10, R7.11, R7.13)
    "vaults": (
        ("VAULT_INSPECT",),
        ("VAULT_READ",),
        ("VAULT_CREATE_KEY", "VAULT_IMPORT_KEY", "VAULT_CREATE_SECRET"),
        (
            "VAULT_CREATE",
            "VAULT_UPDATE",
            "VAULT_DELETE",
            "VAULT_MOVE",
            "VAULT_BACKUP",
            "VAULT_RESTORE",
            "VAULT_REPLICATE",
        ),
    ),
    "keys": (
        ("KEY_INSPECT",),
        ("KEY_READ",),
        # use keys also lets the holder delegate the key (stronger than use key-delegate)
        ("KEY_ENCRYPT", "KEY_DECRYPT", "KEY_EXPORT", "KEY_SIGN", "KEY_VERIFY", "KEY_ASSOCIATE", "KEY_DISASSOCIATE"),
        ("KEY_CREATE", "KEY_UPDATE", "KEY_ROTATE", "KEY_DELETE", "KEY_MOVE", "KEY_IMPORT", "KEY_BACKUP", "KEY_RESTORE"),
    ),
    "key-delegate": ((), (), ("KEY_ASSOCIATE", "KEY_DISASSOCIATE"), ()),  # only `use` means anything (R7.13)
    # Block Volume (R7.23-R7.25)
    "volumes": tuple(a + b for a, b in zip(_VOLUME, _BOOT, strict=True)),
    "boot-volumes": _BOOT,
    "volume-backups": _backup_like("VOLUME_BACKUP"),
    "boot-volume-backups": _backup_like("BOOT_VOLUME_BACKUP"),
    "volume-attachments": (
        ("VOLUME_ATTACHMENT_INSPECT",),
        (),
        ("VOLUME_ATTACHMENT_UPDATE",),
        ("VOLUME_ATTACHMENT_CREATE", "VOLUME_ATTACHMENT_DELETE"),
    ),
    "volume-groups": _inspect_manage("VOLUME_GROUP"),
    "volume-group-backups": _inspect_manage("VOLUME_GROUP_BACKUP", use=("VOLUME_GROUP_BACKUP_COPY",)),
    "backup-policies": (
        ("BACKUP_POLICIES_INSPECT",),
        (),
        ("BACKUP_POLICIES_UPDATE",),
        ("BACKUP_POLICIES_CREATE", "BACKUP_POLICIES_DELETE"),
    ),
    "backup-policy-assignments": (
        ("BACKUP_POLICY_ASSIGNMENT_INSPECT",),
        (),
        (),
        ("BACKUP_POLICY_ASSIGNMENT_CREATE", "BACKUP_POLICY_ASSIGNMENT_DELETE"),
    ),
    "block-volume-replicas": _inspect_manage("BLOCK_VOLUME_REPLICA"),
    "boot-volume-replicas": _inspect_manage("BOOT_VOLUME_REPLICA"),
    # Identity (OCI IAM policy reference)
    "tenancies": (("TENANCY_INSPECT",), ("TENANCY_READ",), (), ("TENANCY_UPDATE",)),
    "compartments": (
        ("COMPARTMENT_INSPECT",),
        ("COMPARTMENT_READ",),
        (),
        ("COMPARTMENT_CREATE", "COMPARTMENT_UPDATE", "COMPARTMENT_DELETE", "COMPARTMENT_MOVE", "COMPARTMENT_RECOVER"),
    ),
    "users": (
        ("USER_INSPECT",),
        ("USER_READ",),
        ("USER_UPDATE",),
        ("USER_CREATE", "USER_DELETE", "USER_UNBLOCK", "USER_APIKEY_ADD", "USER_APIKEY_REMOVE"),
    ),
    "groups": (("GROUP_INSPECT",), ("GROUP_READ",), ("GROUP_UPDATE",), ("GROUP_CREATE", "GROUP_DELETE")),
    "dynamic-groups": (
        ("DYNAMIC_GROUP_INSPECT",),
        ("DYNAMIC_GROUP_READ",),
        (),
        ("DYNAMIC_GROUP_CREATE", "DYNAMIC_GROUP_UPDATE", "DYNAMIC_GROUP_DELETE"),
    ),
    "policies": (("POLICY_READ",), (), (), ("POLICY_CREATE", "POLICY_UPDATE", "POLICY_DELETE", "POLICY_MOVE")),
}

FAMILIES: dict[str, tuple[str, ...]] = {
    "volume-family": (
        "volumes",
        "boot-volumes",
        "volume-backups",
        "boot-volume-backups",
        "volume-attachments",
        "volume-groups",
        "volume-group-backups",
        "backup-policies",
        "backup-policy-assignments",
        "block-volume-replicas",
        "boot-volume-replicas",
    ),
    "vault-family": ("vaults", "keys", "key-delegate"),  # blockvault convenience (not an OCI family name)
    "all-resources": tuple(RESOURCE_TYPES),
}

FAMILY_EXCLUDES = frozenset({"VOLUME_BACKUP_COPY", "BOOT_VOLUME_BACKUP_COPY"})
ANY_PERMISSION = "*"  # `manage all-resources` grants every permission, including ones added later


@functools.cache
def permissions(verb: str, resource_type: str) -> frozenset[str]:
    """Every permission `<verb> <resource_type>` grants."""
    level = VERBS.index(verb.lower())
    rtype = resource_type.lower()
    members = FAMILIES.get(rtype, (rtype,))
    out: set[str] = set()
    for member in members:
        for added in RESOURCE_TYPES[member][: level + 1]:
            out.update(added)
    if rtype == "volume-family":
        out -= FAMILY_EXCLUDES  # R3.31: the family does not carry the copy permissions; the member types do
    if rtype == "all-resources" and verb.lower() == "manage":
        out.add(ANY_PERMISSION)
    return frozenset(out)


@functools.cache
def minimal_grant(permission: str) -> tuple[str, str]:
    """The narrowest (verb, individual resource type) that grants `permission`; key-delegate before keys."""
    order = ["key-delegate", *[t for t in RESOURCE_TYPES if t != "key-delegate"]]
    for verb in VERBS:
        for rtype in order:
            if permission in permissions(verb, rtype):
                return verb, rtype
    return "manage", "all-resources"


# --- syntax tree -------------------------------------------------------------------------------------------------

SUBJECT_KINDS = ("group", "dynamic-group", "service", "any-user", "any-group")


@dataclass(frozen=True)
class Subjects:
    """`kind` is one of SUBJECT_KINDS; `names` and `ids` are as written (matched case-insensitively)."""

    kind: str
    names: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Location:
    """`tenancy`, `compartment id <ocid>` (ocid set) or `compartment A:B` (path set)."""

    tenancy: bool = False
    ocid: str | None = None
    path: tuple[str, ...] = ()


@dataclass(frozen=True)
class Compare:
    variable: str
    op: str  # "=" or "!="
    value: str
    pattern: bool = False  # written /.../


@dataclass(frozen=True)
class Combine:
    mode: str  # "all" or "any"
    terms: tuple[Condition, ...]


Condition = Union[Compare, Combine]  # noqa: UP007 - a runtime alias used in annotations of frozen dataclasses


@dataclass(frozen=True)
class Statement:
    subjects: Subjects
    verb: str
    resource_type: str
    location: Location
    condition: Condition | None = None

    def __str__(self) -> str:
        return render(self)

    @property
    def grants(self) -> frozenset[str]:
        return permissions(self.verb, self.resource_type)


class PolicySyntaxError(InvalidArgument):
    """A statement that does not parse; `word` and `position` (1-based word index) name the culprit."""

    message = "invalid value for {field}: {reason}"


# --- tokenizer ---------------------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<q>'[^']*'|"[^"]*")          # quoted text
      | (?P<pat>/[^/\s]*/)              # /pattern/
      | (?P<op>!=|=)
      | (?P<sym>[{},/])
      | (?P<word>[^\s{},='"!/]+)
    )""",
    re.VERBOSE,
)
_WORD = re.compile(r"[^\s{},='\"!/]+")
_KEYWORDS = frozenset(
    {
        "allow",
        "to",
        "in",
        "where",
        "id",
        "group",
        "service",
        "any-user",
        "any-group",
        "dynamic-group",
        "all",
        "any",
        "tenancy",
        "compartment",
        *VERBS,
    }
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # q | pat | op | sym | word | end
    text: str
    index: int  # 1-based


def _tokenize(text: str, field_name: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            bad = stripped[pos:].split()[0] if stripped[pos:].split() else stripped[pos:]
            raise PolicySyntaxError(field=field_name, reason=f"unexpected text {bad!r} at word {len(out) + 1}")
        kind = m.lastgroup or "word"
        out.append(_Tok(kind, m.group(kind), len(out) + 1))
        pos = m.end()
    out.append(_Tok("end", "<end of statement>", len(out) + 1))
    return out


class _Parser:
    def __init__(self, text: str, field_name: str) -> None:
        self.field = field_name
        self.toks = _tokenize(text, field_name)
        self.i = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok

    def fail(self, tok: _Tok, expected: str) -> PolicySyntaxError:
        return PolicySyntaxError(
            field=self.field, reason=f"unexpected {tok.text!r} at word {tok.index}; expected {expected}"
        )

    def keyword(self, *words: str) -> str:
        tok = self.take()
        if tok.kind == "word" and tok.text.lower() in words:
            return tok.text.lower()
        raise self.fail(tok, " or ".join(repr(w) for w in words))

    def at_keyword(self, *words: str) -> bool:
        tok = self.peek()
        return tok.kind == "word" and tok.text.lower() in words

    def at_sym(self, sym: str) -> bool:
        tok = self.peek()
        return tok.kind == "sym" and tok.text == sym

    def name(self, what: str) -> str:
        tok = self.take()
        if tok.kind == "q" and len(tok.text) > 2:
            return tok.text[1:-1]
        if tok.kind == "word" and tok.text.lower() not in ("to", "in", "where"):
            return tok.text
        raise self.fail(tok, what)

    # statement ------------------------------------------------------------------------------------------------

    def statement(self) -> Statement:
        self.keyword("allow")
        subjects = self.subjects()
        self.keyword("to")
        verb_tok = self.take()
        if verb_tok.kind != "word" or verb_tok.text.lower() not in VERBS:
            raise self.fail(verb_tok, "a verb: inspect, read, use or manage")
        rtype_tok = self.take()
        rtype = rtype_tok.text.lower()
        if rtype_tok.kind != "word" or (rtype not in RESOURCE_TYPES and rtype not in FAMILIES):
            raise self.fail(rtype_tok, "a resource type (e.g. volumes, volume-family, keys, key-delegate, vaults)")
        self.keyword("in")
        location = self.location()
        condition: Condition | None = None
        if self.at_keyword("where"):
            self.take()
            condition = self.condition()
        end = self.peek()
        if end.kind != "end":
            raise self.fail(end, "'where' or the end of the statement")
        return Statement(subjects, verb_tok.text.lower(), rtype, location, condition)

    def subjects(self) -> Subjects:
        tok = self.take()
        kind = tok.text.lower() if tok.kind == "word" else ""
        if kind in ("any-user", "any-group"):
            return Subjects(kind)
        if kind not in ("group", "dynamic-group", "service"):
            raise self.fail(tok, "a subject: group, dynamic-group, service, any-user or any-group")
        names: list[str] = []
        ident: list[str] = []
        while True:
            if kind != "service" and self.at_keyword("id"):
                self.take()
                ident.append(self.name("an OCID"))
            else:
                first = self.name(f"a {kind} name")
                if kind == "group" and self.at_sym("/"):  # 'domain'/'group': blockvault has one (Default) domain
                    self.take()
                    if first.lower() != "default":
                        raise self.fail(self.toks[self.i - 2], "the identity domain 'Default'")
                    first = self.name("a group name")
                names.append(first)
            if not self.at_sym(","):
                break
            self.take()
            if self.at_keyword(kind):
                self.take()
        return Subjects(kind, tuple(names), tuple(ident))

    def location(self) -> Location:
        word = self.keyword("tenancy", "compartment")
        if word == "tenancy":
            return Location(tenancy=True)
        if self.at_keyword("id"):
            self.take()
            return Location(ocid=self.name("a compartment OCID"))
        tok = self.peek()
        path = self.name("a compartment name or path A:B")
        parts = tuple(path.split(":"))
        if any(not p for p in parts):
            raise self.fail(tok, "a compartment path like A:B with no empty part")
        return Location(path=parts)

    def condition(self) -> Condition:
        if self.at_keyword("all", "any") and self.toks[self.i + 1].kind == "sym" and self.toks[self.i + 1].text == "{":
            mode = self.take().text.lower()
            self.take()
            terms = [self.condition()]
            while self.at_sym(","):
                self.take()
                terms.append(self.condition())
            close = self.take()
            if not (close.kind == "sym" and close.text == "}"):
                raise self.fail(close, "',' or '}'")
            return Combine(mode, tuple(terms))
        var = self.take()
        if var.kind != "word" or not var.text.lower().startswith(("request.", "target.")):
            raise self.fail(var, "a condition: a variable (request.* or target.*), all {...} or any {...}")
        op = self.take()
        if op.kind != "op":
            raise self.fail(op, "'=' or '!='")
        val = self.take()
        if val.kind == "q":
            return Compare(var.text.lower(), op.text, val.text[1:-1])
        if val.kind == "pat":
            return Compare(var.text.lower(), op.text, val.text[1:-1], pattern=True)
        if val.kind == "word":
            return Compare(var.text.lower(), op.text, val.text)
        raise self.fail(val, "a value ('text', /pattern/ or a word)")


def parse(text: str, *, field_name: str = "statements") -> Statement:
    """One statement; `PolicySyntaxError` (a 400 InvalidParameter at the API) names the offending word."""
    if not isinstance(text, str) or not text.strip():
        raise PolicySyntaxError(field=field_name, reason="a statement must be a non-empty string")
    return _Parser(text, field_name).statement()


# --- printer -----------------------------------------------------------------------------------------------------


def _name(value: str) -> str:
    if _WORD.fullmatch(value) and value.lower() not in _KEYWORDS:
        return value
    return f'"{value}"' if "'" in value else f"'{value}'"


def _value(c: Compare) -> str:
    if c.pattern:
        return f"/{c.value}/"
    return f'"{c.value}"' if "'" in c.value else f"'{c.value}'"


def render_condition(c: Condition) -> str:
    if isinstance(c, Compare):
        return f"{c.variable} {c.op} {_value(c)}"
    return f"{c.mode} {{" + ", ".join(render_condition(t) for t in c.terms) + "}"


def render_location(loc: Location) -> str:
    if loc.tenancy:
        return "tenancy"
    if loc.ocid is not None:
        return f"compartment id {_name(loc.ocid)}"
    return "compartment " + _name(":".join(loc.path))


def render(st: Statement) -> str:
    """The canonical text of a statement; parse(render(s)) == s."""
    s = st.subjects
    if s.kind in ("any-user", "any-group"):
        who = s.kind
    else:
        parts = [f"{s.kind} " + ", ".join(_name(n) for n in s.names)] if s.names else []
        parts += [f"{s.kind} id {_name(i)}" for i in s.ids]
        who = ", ".join(parts)
    text = f"Allow {who} to {st.verb} {st.resource_type} in {render_location(st.location)}"
    if st.condition is not None:
        text += " where " + render_condition(st.condition)
    return text


# --- evaluation --------------------------------------------------------------------------------------------------

Value = Union[str, tuple[str, ...]]  # noqa: UP007
Variables = Mapping[str, Value]


def _match(pattern: Compare, actual: str) -> bool:
    want, have = pattern.value.lower(), actual.lower()
    if not pattern.pattern:
        return want == have
    if want.startswith("*") and want.endswith("*") and len(want) >= 2:
        return want[1:-1] in have
    if want.endswith("*"):
        return have.startswith(want[:-1])
    if want.startswith("*"):
        return have.endswith(want[1:])
    return want == have


def holds(c: Condition, variables: Variables) -> bool:
    """R7.6/R7.7: case-insensitive; a variable the request does not carry makes its comparison false."""
    if isinstance(c, Combine):
        results = (holds(t, variables) for t in c.terms)
        return all(results) if c.mode == "all" else any(results)
    actual = variables.get(c.variable)
    if actual is None:
        return False
    values = (actual,) if isinstance(actual, str) else actual
    if not values:
        return False
    hit = any(_match(c, v) for v in values)
    return hit if c.op == "=" else not hit


@dataclass(frozen=True)
class Subject:
    """Who asks: a user with its groups, or a service principal (e.g. `blockstorage`)."""

    user_id: str | None = None
    group_ids: frozenset[str] = frozenset()
    group_names: frozenset[str] = frozenset()  # lower-case
    service: str | None = None


def names_subject(s: Subjects, who: Subject) -> bool:
    if s.kind == "any-user":
        return True  # R7.2: all users and service principals
    if s.kind == "any-group":
        return who.user_id is not None
    if s.kind == "service":
        return who.service is not None and who.service.lower() in {n.lower() for n in s.names}
    if s.kind == "group":
        return any(n.lower() in who.group_names for n in s.names) or any(i in who.group_ids for i in s.ids)
    return False  # dynamic-group: no instance principals here


@dataclass(frozen=True)
class CompartmentTree:
    """The compartments as the evaluator needs them: parent links and names. The root (tenancy) has parent None."""

    root: str
    parent: Mapping[str, str | None]
    name: Mapping[str, str]
    inactive: frozenset[str] = frozenset()  # deleted compartments: still gettable, never a policy location

    def chain(self, compartment_id: str) -> tuple[str, ...]:
        """The compartment and its ancestors up to the root; () for an unknown compartment."""
        out: list[str] = []
        current: str | None = compartment_id
        while current is not None and current in self.parent and current not in out:
            out.append(current)
            current = self.parent[current]
        return tuple(out)

    def child(self, parent_id: str, name: str) -> str | None:
        for cid, pid in self.parent.items():
            if pid == parent_id and cid not in self.inactive and self.name[cid].lower() == name.lower():
                return cid
        return None

    def resolve(self, loc: Location, attached_to: str) -> str | None:
        """Location of a statement in a policy attached to `attached_to` -> compartment OCID (None: no such one).
        R7.5: a bare name is a child of the policy's compartment; `tenancy` only from a policy in the root."""
        if loc.tenancy:
            return self.root if attached_to == self.root else None
        if loc.ocid is not None:
            return loc.ocid if attached_to in self.chain(loc.ocid) else None
        current: str | None = attached_to
        for part in loc.path:
            if current is None:
                return None
            current = self.child(current, part)
        return current

    def path(self, compartment_id: str) -> str:
        """`tenancy` or `compartment A:B` relative to the root (for hints)."""
        chain = self.chain(compartment_id)
        if not chain or chain[0] == self.root:
            return "tenancy"
        names = [self.name[c] for c in reversed(chain[:-1])]
        return "compartment " + _name(":".join(names))


@dataclass(frozen=True)
class Rule:
    """A statement bound to where it applies: the compiled form the index holds."""

    statement: Statement
    location_id: str
    policy_id: str
    text: str


@dataclass
class PolicyIndex:
    """Rules by (permission, location compartment): a check looks at one bucket per ancestor compartment, so its
    cost grows with the depth of the compartment tree, not with the number of statements."""

    tree: CompartmentTree
    rules: dict[tuple[str, str], list[Rule]] = field(default_factory=dict)
    count: int = 0

    def add(self, rule: Rule) -> None:
        for perm in rule.statement.grants:
            self.rules.setdefault((perm, rule.location_id), []).append(rule)
        self.count += 1

    def find(self, who: Subject, permission: str, compartment_id: str, variables: Variables) -> Rule | None:
        """The first rule that allows `permission` on a target in `compartment_id`, or None."""
        chain = self.tree.chain(compartment_id)
        env = dict(variables)
        env.setdefault("request.permission", permission)
        for loc in chain:
            for key in ((permission, loc), (ANY_PERMISSION, loc)):
                for rule in self.rules.get(key, ()):
                    st = rule.statement
                    if names_subject(st.subjects, who) and (st.condition is None or holds(st.condition, env)):
                        return rule
        return None


def compile_policies(tree: CompartmentTree, policies: Iterable[tuple[str, str, Sequence[str]]]) -> PolicyIndex:
    """Build the index from (policy id, compartment it is attached to, statements). Statements that no longer parse
    or whose location no longer resolves (a renamed or deleted compartment) are skipped: they grant nothing."""
    index = PolicyIndex(tree)
    for policy_id, attached_to, texts in policies:
        for text in texts:
            try:
                st = parse(text)
            except PolicySyntaxError:
                continue
            loc = tree.resolve(st.location, attached_to)
            if loc is not None:
                index.add(Rule(st, loc, policy_id, text))
    return index


def suggest(
    *, subject: str, permission: str, location: str, key_id: str | None = None, vault_id: str | None = None
) -> str:
    """A statement, ready to paste, that grants `permission` to `subject` at `location`."""
    verb, rtype = minimal_grant(permission)
    text = f"Allow {subject} to {verb} {rtype} in {location}"
    if key_id and rtype in ("keys", "key-delegate"):
        text += f" where target.key.id = '{key_id}'"
    elif vault_id and rtype == "vaults":
        text += f" where target.vault.id = '{vault_id}'"
    return text
