"""Migration safety: which statements of a migration break the release still serving.

During a rolling, blue-green or canary deploy the old release keeps serving
while the new schema is in place, so a migration must be backward
compatible (expand now, contract in a later release). `lint_sql` parses the
SQL a migration will run with a real parser (pglast, PostgreSQL's own
parser, for PostgreSQL; sqlglot for MySQL/MariaDB and SQLite) and flags:

* DROP TABLE, ALTER TABLE ... DROP COLUMN
* RENAME of a column or a table
* a column's type changed (ALTER COLUMN TYPE; MODIFY/CHANGE COLUMN in MySQL)
* SET NOT NULL, and ADD COLUMN ... NOT NULL without a default (or whose
  default the same migration drops again, as Django's migrations do)
* a UNIQUE or PRIMARY KEY constraint, or unique index, on an existing table
* CREATE INDEX without CONCURRENTLY on PostgreSQL (it blocks writes)
* a table rebuilt under its own name (a new table filled from the old one,
  the old one dropped, the new one renamed to the old name): SQLite's way to
  change a column, as Django and Alembic's batch mode write it

Tables the same SQL creates first are new: nothing old uses them.

`excuse` then passes over what the database's `lint:` settings allow: a rule
about locks (`SIZE_AWARE_RULES`) on a table smaller than `small_table_rows`,
and each `allow: [{rule, table}]` entry.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from conveyor.config.lint import SIZE_AWARE_RULES, LintSettings
from conveyor.databases.urls import POSTGRESQL
from conveyor.errors import MigrationError

ADVICE = {
    "drop-table": "Deploy code that no longer uses the table first; drop it in a later "
    "release (contract), once no running release reads it.",
    "drop-column": "Deploy code that no longer reads or writes the column first; drop it in a "
    "later release (contract), once no running release uses it.",
    "rename-column": "Add the new column (expand), make the new code write both and read the "
    "new one, backfill, and drop the old column in a later release.",
    "rename-table": "Create the new table (or a view under the new name), move the code over "
    "in steps, and drop the old name in a later release.",
    "alter-column-type": "Add a column of the new type (expand), write both, backfill in "
    "batches, switch reads, and drop the old column in a later release.",
    "set-not-null": "Make every running release write the column and backfill it first; on "
    "PostgreSQL add CHECK (column IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT it, and SET "
    "NOT NULL in a later release.",
    "add-column-not-null": "Add the column nullable or with a DEFAULT that stays (expand); "
    "make it NOT NULL in a later release, once every running release writes it.",
    "add-unique": "Make the code stop writing duplicates and remove the existing ones first; "
    "then add the constraint in a later release (on PostgreSQL: CREATE UNIQUE INDEX "
    "CONCURRENTLY, then ADD CONSTRAINT ... USING INDEX).",
    "create-index-blocking": "Use CREATE INDEX CONCURRENTLY, outside a transaction (Alembic: "
    "op.create_index(..., postgresql_concurrently=True) in an autocommit_block(); Django: "
    "AddIndexConcurrently in a migration with atomic = False); on a small table, set "
    "lint.small_table_rows or allow it in lint.allow.",
    "unchecked": "Check by hand that the running release still works with it, then deploy "
    "with --allow-breaking-migrations.",
    "rebuild-table": "Only add nullable columns (or columns with a default) in this release, "
    "which SQLite can do with ALTER TABLE ADD COLUMN; change or drop columns in a later "
    "release, once no running release uses them.",
}


@dataclass(frozen=True)
class Finding:
    """One statement that breaks the release still serving, and why."""

    rule: str  # a key of ADVICE
    line: int  # where the statement starts in the SQL (1-based)
    statement: str
    table: str
    problem: str
    where: str = ""  # the migration it is in, when the SQL came from several

    @property
    def advice(self) -> str:
        return ADVICE[self.rule]

    def describe(self) -> str:
        at = f"{self.where} line {self.line}" if self.where else f"line {self.line}"
        return (
            f"{at}: {_short(self.statement)}\n    {self.problem} [{self.rule}]\n    {self.advice}"
        )


def lint_sql(sql: str, engine: str) -> list[Finding]:
    """The statements of `sql` that break the release still serving, in order.

    Raises `MigrationError` when the SQL does not parse (it cannot be checked).

    >>> [f.rule for f in lint_sql("ALTER TABLE users DROP COLUMN email;", "postgresql")]
    ['drop-column']
    >>> lint_sql("CREATE TABLE t (id int); CREATE INDEX i ON t (id);", "postgresql")
    []
    """
    if engine == POSTGRESQL:
        return _Linter(engine).run(_postgres_statements(sql))
    return _Linter(engine).run(_sqlglot_statements(sql, engine))


def lint_parts(parts: Sequence[tuple[str, str]], engine: str) -> list[Finding]:
    """`lint_sql` of several migrations' SQL, in the order they run, as one script (a table
    one creates is new for the next); each finding names its migration and line in it.

    >>> [(f.where, f.line) for f in lint_parts([("a.1", "SELECT 1;"),
    ...     ("a.2", "SELECT 2;\\nDROP TABLE t;")], "postgresql")]
    [('a.2', 2)]
    """
    text, starts = "", []
    for name, sql in parts:
        starts.append((text.count("\n") + 1, name))
        text += sql.rstrip() + "\n"
    located = []
    for finding in lint_sql(text, engine):
        first, name = next((s for s in reversed(starts) if s[0] <= finding.line), (1, ""))
        located.append(replace(finding, line=finding.line - first + 1, where=name))
    return located


@dataclass(frozen=True)
class Excused:
    """A finding the database's `lint:` settings let through, and why."""

    finding: Finding
    reason: str

    def describe(self) -> str:
        f = self.finding
        at = f"{f.where} line {f.line}" if f.where else f"line {f.line}"
        return f"{at}: {f.rule} on {f.table} not flagged: {self.reason}"


def excuse(
    findings: Sequence[Finding],
    settings: LintSettings,
    rows: Mapping[str, int],
    database: str = "main",
) -> tuple[list[Finding], list[Excused]]:
    """(the findings that stand, those the settings let through): a rule about locks on a
    table with fewer than `small_table_rows` rows (`rows`: what the database could tell),
    and the `allow` entries.

    >>> f = Finding("create-index-blocking", 1, "CREATE INDEX i ON t (a)", "t", "blocks")
    >>> kept, excused = excuse([f], LintSettings(), {"t": 12})
    >>> kept, excused[0].reason
    ([], 't has 12 rows, fewer than databases.main.lint.small_table_rows (10000)')
    """
    kept, excused = [], []
    for f in findings:
        size = rows.get(f.table)
        if settings.allows(f.rule, f.table):
            excused.append(Excused(f, f"allowed by databases.{database}.lint.allow"))
        elif f.rule in SIZE_AWARE_RULES and size is not None and size < settings.small_table_rows:
            excused.append(
                Excused(
                    f,
                    f"{f.table} has {size} row{'' if size == 1 else 's'}, fewer than "
                    f"databases.{database}.lint.small_table_rows ({settings.small_table_rows})",
                )
            )
        else:
            kept.append(f)
    return kept, excused


def describe_findings(findings: list[Finding]) -> str:
    """The findings as a message, one block per statement."""
    return "\n".join(f"  {f.describe()}" for f in findings)


# -- a statement, engine-neutral ---------------------------------------------------------


@dataclass(frozen=True)
class _Change:
    """One thing a statement does to a table, as the rules see it."""

    kind: str  # "create-table", "drop-table", "rename-table", "drop-column", "rename-column",
    # "alter-type", "modify-column", "set-not-null", "add-column", "drop-default",
    # "add-unique", "create-index"
    table: str
    column: str = ""
    new_name: str = ""  # rename-table: the table's new name
    not_null: bool = False
    has_default: bool = False
    unique: bool = False
    concurrent: bool = False


@dataclass(frozen=True)
class _Statement:
    line: int
    text: str
    changes: tuple[_Change, ...]


class _Linter:
    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.created: set[str] = set()
        self.added_with_default: set[tuple[str, str]] = set()  # NOT NULL columns with a default

    def run(self, statements: Iterator[_Statement]) -> list[Finding]:
        script = list(statements)
        rebuilt = _rebuilt_tables([c for st in script for c in st.changes])
        findings = []
        for statement in script:
            for change in statement.changes:
                problem = self._problem(change, rebuilt)
                if problem is not None:
                    rule, text = problem
                    findings.append(
                        Finding(rule, statement.line, statement.text, change.table, text)
                    )
        return findings

    def _problem(self, c: _Change, rebuilt: dict[str, str]) -> tuple[str, str] | None:
        table = c.table
        if c.kind == "create-table":
            self.created.add(table)
            return None
        if c.kind == "unchecked":
            return "unchecked", (
                "the parser cannot read this statement, so whether the running release "
                "survives it cannot be checked"
            )
        if c.kind == "rename-table" and c.new_name in rebuilt and rebuilt[c.new_name] == table:
            return "rebuild-table", (
                f"rebuilds table {c.new_name} (a copy with the new definition replaces it): "
                "the running release may not fit the new columns, their types or NOT NULL"
            )
        if table in self.created:
            return None  # nothing running knows this table yet
        if c.kind == "drop-table" and table in rebuilt:
            return None  # it comes back under the same name: see the rename
        if c.kind == "drop-table":
            return "drop-table", f"drops table {table}, which the running release still uses"
        if c.kind == "rename-table":
            return "rename-table", f"renames table {table}: the running release uses the old name"
        if c.kind == "drop-column":
            return "drop-column", (
                f"drops column {table}.{c.column}: the running release still reads or writes it"
            )
        if c.kind == "rename-column":
            return "rename-column", (
                f"renames column {table}.{c.column}: the running release uses the old name"
            )
        if c.kind == "alter-type":
            return "alter-column-type", (
                f"changes the type of {table}.{c.column}: the running release may write values "
                "the new type refuses (and the table is rewritten under an exclusive lock)"
            )
        if c.kind == "modify-column":
            return "alter-column-type", (
                f"redefines column {table}.{c.column} (its type, nullability or name): the "
                "running release was written for the old definition"
            )
        if c.kind == "set-not-null":
            return "set-not-null", (
                f"makes {table}.{c.column} NOT NULL: the running release may insert rows without it"
            )
        if c.kind == "add-column" and c.not_null and not c.has_default:
            return "add-column-not-null", (
                f"adds {table}.{c.column} NOT NULL without a default: the running release's "
                "INSERTs do not name it and fail"
            )
        if c.kind == "add-column" and c.not_null:
            self.added_with_default.add((table, c.column))
            return None
        if c.kind == "drop-default" and (table, c.column) in self.added_with_default:
            return "add-column-not-null", (
                f"drops the default of {table}.{c.column}, added NOT NULL just before: the "
                "running release's INSERTs do not name it and fail"
            )
        if c.kind == "add-unique":
            return "add-unique", (
                f"adds a UNIQUE or PRIMARY KEY constraint to {table}, which has rows: the "
                "running release may write duplicates, which then fail"
            )
        if c.kind == "create-index" and c.unique:
            return "add-unique", (
                f"adds a unique index to {table}, which has rows: the running release may "
                "write duplicates, which then fail"
            )
        if c.kind == "create-index" and self.engine == POSTGRESQL and not c.concurrent:
            return "create-index-blocking", (
                f"builds an index on {table} without CONCURRENTLY: writes to {table} wait "
                "until it is built"
            )
        return None


def _rebuilt_tables(changes: list[_Change]) -> dict[str, str]:
    """{old name: the new table's name} for each table the script replaces by a copy: a
    table it creates, then renames to the name of a table it dropped."""
    created: set[str] = set()
    dropped: set[str] = set()
    rebuilt: dict[str, str] = {}
    for c in changes:
        if c.kind == "create-table":
            created.add(c.table)
        elif c.kind == "drop-table":
            dropped.add(c.table)
        elif c.kind == "rename-table" and c.table in created and c.new_name in dropped:
            rebuilt[c.new_name] = c.table
    return rebuilt


# -- PostgreSQL: pglast ------------------------------------------------------------------


def _postgres_statements(sql: str) -> Iterator[_Statement]:
    import pglast

    data = sql.encode()  # libpg_query's locations are byte offsets
    try:
        raws = pglast.parse_sql(sql)
    except pglast.parser.ParseError as exc:
        # ("message", location): the location is a 1-based byte offset
        where = exc.args[1] if len(exc.args) > 1 else None
        at = f" at line {_line_in(data, where - 1)}" if isinstance(where, int) else ""
        raise MigrationError(
            f"the migration's SQL does not parse as PostgreSQL{at}: {exc.args[0]}",
            hint="check what sql_preview prints; the safety check needs the SQL that will run",
        ) from None
    for raw in raws:
        start = raw.stmt_location or 0
        end = start + raw.stmt_len if raw.stmt_len else len(data)
        skipped, text = _without_leading_comments(data[start:end].decode(errors="replace"))
        changes = tuple(_pg_changes(raw.stmt))
        if changes:
            yield _Statement(_line_in(data, start) + skipped, text.strip(), changes)


def _pg_changes(stmt: Any) -> Iterator[_Change]:
    from pglast import enums

    objects = enums.ObjectType
    name = type(stmt).__name__
    if name == "CreateStmt":
        yield _Change("create-table", _relname(stmt.relation))
    elif name == "DropStmt" and stmt.removeType == objects.OBJECT_TABLE:
        for obj in stmt.objects or ():
            yield _Change("drop-table", _qualified([getattr(p, "sval", "") for p in obj][-2:]))
    elif name == "RenameStmt" and stmt.renameType == objects.OBJECT_TABLE:
        yield _Change("rename-table", _relname(stmt.relation), new_name=stmt.newname or "")
    elif name == "RenameStmt" and stmt.renameType == objects.OBJECT_COLUMN:
        yield _Change("rename-column", _relname(stmt.relation), stmt.subname or "")
    elif name == "IndexStmt":
        yield _Change(
            "create-index",
            _relname(stmt.relation),
            unique=bool(stmt.unique),
            concurrent=bool(stmt.concurrent),
        )
    elif name == "AlterTableStmt":
        table = _relname(stmt.relation)
        for cmd in stmt.cmds or ():
            yield from _pg_alter(table, cmd)


def _pg_alter(table: str, cmd: Any) -> Iterator[_Change]:
    from pglast import enums

    at, constr = enums.AlterTableType, enums.ConstrType
    sub, column = cmd.subtype, cmd.name or ""
    if sub == at.AT_DropColumn:
        yield _Change("drop-column", table, column)
    elif sub == at.AT_AlterColumnType:
        yield _Change("alter-type", table, column)
    elif sub == at.AT_SetNotNull:
        yield _Change("set-not-null", table, column)
    elif sub == at.AT_ColumnDefault and cmd.def_ is None:
        yield _Change("drop-default", table, column)
    elif sub == at.AT_AddColumn:
        kinds = {k.contype for k in (cmd.def_.constraints or ())}
        valued = {constr.CONSTR_DEFAULT, constr.CONSTR_IDENTITY, constr.CONSTR_GENERATED}
        yield _Change(
            "add-column",
            table,
            cmd.def_.colname,
            not_null=bool(kinds & {constr.CONSTR_NOTNULL, constr.CONSTR_PRIMARY}),
            has_default=bool(kinds & valued),
        )
    elif sub == at.AT_AddConstraint:
        unique = cmd.def_.contype in (constr.CONSTR_UNIQUE, constr.CONSTR_PRIMARY)
        if unique and not cmd.def_.indexname:  # USING INDEX: the index exists already
            yield _Change("add-unique", table)


def _line_in(data: bytes, offset: int) -> int:
    return data[:offset].count(b"\n") + 1


def _relname(relation: Any) -> str:
    return _qualified([relation.schemaname, relation.relname])


def _qualified(parts: list[str | None]) -> str:
    """`public.users` and `users` are the same table for the rules."""
    names = [p for p in parts if p]
    if len(names) > 1 and names[0] == "public":
        names = names[1:]
    return ".".join(names)


# -- MySQL/MariaDB and SQLite: sqlglot ---------------------------------------------------


def _sqlglot_statements(sql: str, engine: str) -> Iterator[_Statement]:
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    dialect = "mysql" if engine == "mysql" else "sqlite"
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    for line, text in _split_statements(sql, dialect):
        try:
            tree = sqlglot.parse_one(text, read=dialect)
        except (ParseError, TokenError) as exc:
            raise MigrationError(
                f"the migration's SQL does not parse as {engine} at line {line}: "
                f"{str(exc).splitlines()[0]}",
                hint="check what sql_preview prints; the safety check needs the SQL that will run",
            ) from None
        changes = tuple(_sqlglot_changes(tree, exp))
        if changes:
            skipped, body = _without_leading_comments(text)
            yield _Statement(line + skipped, body.strip(), changes)


# Statements sqlglot could not parse into a tree but kept as text: they cannot be checked.
_DDL = {"ALTER", "CREATE", "DROP"}


def _sqlglot_changes(tree: Any, exp: Any) -> Iterator[_Change]:
    if isinstance(tree, exp.Create):
        kind = (tree.args.get("kind") or "").upper()
        target = tree.this
        if kind == "TABLE":
            table = target.this if isinstance(target, exp.Schema) else target
            yield _Change("create-table", _table_name(table))
        elif kind == "INDEX":
            yield _Change(
                "create-index",
                _table_name(target.args.get("table")),
                unique=bool(tree.args.get("unique")),
            )
    elif isinstance(tree, exp.Drop) and (tree.args.get("kind") or "").upper() == "TABLE":
        for table in tree.args.get("tables") or ():
            yield _Change("drop-table", _table_name(table))
    elif isinstance(tree, exp.Command) and str(tree.this).upper() in _DDL:
        yield _Change("unchecked", "")
    elif isinstance(tree, exp.Command) and str(tree.this).upper() == "RENAME":
        rest = str(tree.expression.this) if tree.expression is not None else ""
        for pair in rest.removeprefix("TABLE").split(","):
            old = pair.strip().split()[0] if pair.strip() else ""
            yield _Change("rename-table", old.strip('`"').split(".")[-1])
    elif isinstance(tree, exp.Alter):
        table = _table_name(tree.this)
        for action in tree.args.get("actions") or ():
            yield from _alter_action(table, action, exp)


_VALUED = {
    "DefaultColumnConstraint",
    "AutoIncrementColumnConstraint",
    "GeneratedAsIdentityColumnConstraint",
    "ComputedColumnConstraint",
}


def _alter_action(table: str, action: Any, exp: Any) -> Iterator[_Change]:
    if isinstance(action, exp.Command):  # an action sqlglot kept as text
        yield _Change("unchecked", table)
    elif isinstance(action, exp.Drop) and (action.args.get("kind") or "").upper() == "COLUMN":
        for column in action.args.get("tables") or ():
            yield _Change("drop-column", table, column.name)
    elif isinstance(action, exp.RenameColumn):
        yield _Change("rename-column", table, action.this.name)
    elif isinstance(action, exp.AlterRename):
        yield _Change("rename-table", table, new_name=_table_name(action.this))
    elif isinstance(action, exp.ModifyColumn):
        old = action.args.get("rename_from")
        if old is not None and old.name != action.this.name:  # CHANGE old new ...
            yield _Change("rename-column", table, old.name)
        else:
            yield _Change("modify-column", table, action.this.name)
    elif isinstance(action, exp.AlterColumn):
        if action.args.get("drop"):
            yield _Change("drop-default", table, action.this.name)
        elif action.args.get("dtype") is not None:
            yield _Change("alter-type", table, action.this.name)
    elif isinstance(action, exp.ColumnDef):
        kinds = {
            type(kind).__name__
            for c in action.args.get("constraints") or ()
            if (kind := c.args.get("kind")) is not None and not kind.args.get("allow_null")
        }
        yield _Change(
            "add-column",
            table,
            action.name,
            not_null=bool(kinds & {"NotNullColumnConstraint", "PrimaryKeyColumnConstraint"}),
            has_default=bool(kinds & _VALUED),
        )
    elif isinstance(action, exp.AddConstraint):
        for constraint in action.expressions or ():
            parts = (
                constraint.expressions if isinstance(constraint, exp.Constraint) else [constraint]
            )
            if any(isinstance(p, exp.UniqueColumnConstraint | exp.PrimaryKey) for p in parts):
                yield _Change("add-unique", table)


def _table_name(table: Any) -> str:
    if table is None:
        return ""
    return str(getattr(table, "name", table)).strip('`"')


def _split_statements(sql: str, dialect: str) -> Iterator[tuple[int, str]]:
    """(first line, text) of each statement, split at top-level semicolons by sqlglot's
    tokenizer (so a ";" inside a string or comment does not split)."""
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import TokenError

    try:
        tokens = Dialect.get_or_raise(dialect).tokenize(sql)
    except TokenError as exc:
        raise MigrationError(f"the migration's SQL does not parse: {exc}") from None
    lines = _line_starts(sql)
    start: int | None = None
    for token in tokens:
        if token.token_type.name == "SEMICOLON":
            if start is not None:
                yield _line_of(lines, start), sql[start : token.start]
            start = None
        elif start is None:
            start = token.start
    if start is not None:
        yield _line_of(lines, start), sql[start:]


def _line_starts(text: str) -> list[int]:
    return [0] + [m.end() for m in re.finditer("\n", text)]


def _line_of(starts: list[int], offset: int) -> int:
    import bisect

    return bisect.bisect_right(starts, offset)


_LEADING = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.DOTALL)


def _without_leading_comments(text: str) -> tuple[int, str]:
    """(lines skipped, the text from its first word): a statement's own comments, such as
    Django's "-- Add field ...", come before it in the parser's span."""
    skipped = _LEADING.match(text)
    cut = skipped.end() if skipped else 0
    return text[:cut].count("\n"), text[cut:]


def _short(statement: str, limit: int = 160) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
