"""`databases.<name>.lint`: how the migration safety check treats small tables, and the
findings a team has looked at and allowed."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, field_validator

from conveyor.config.durations import problem

# The rules of `conveyor.databases.lint` (a test keeps the two lists the same).
LINT_RULES = (
    "drop-table",
    "drop-column",
    "rename-column",
    "rename-table",
    "alter-column-type",
    "set-not-null",
    "add-column-not-null",
    "add-unique",
    "create-index-blocking",
    "unchecked",
    "rebuild-table",
)
# Rules about a lock held while the table is read or rewritten, not about what the running
# release does: harmless on a small table.
SIZE_AWARE_RULES = ("create-index-blocking",)
DEFAULT_SMALL_TABLE_ROWS = 10_000


class LintAllow(BaseModel):
    """A finding the team has looked at: this rule does not stop a deploy on this table."""

    model_config = ConfigDict(extra="forbid")

    rule: str = Field(description="A rule id, e.g. create-index-blocking.")
    table: str = Field(description='The table, as the finding names it ("orders", "app.orders").')

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if value not in LINT_RULES:
            raise problem(f"unknown lint rule {value!r}; the rules are: {', '.join(LINT_RULES)}")
        return value

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not value.strip():
            raise problem("expected a table name")
        return value.strip()


class LintSettings(BaseModel):
    """The migration safety check for one database."""

    model_config = ConfigDict(extra="forbid")

    small_table_rows: NonNegativeInt = Field(
        DEFAULT_SMALL_TABLE_ROWS,
        description="Tables with fewer rows are not flagged by rules about locks "
        f"({', '.join(SIZE_AWARE_RULES)}), where the database can tell the size "
        "(PostgreSQL); 0 flags every table.",
    )
    allow: list[LintAllow] = Field(
        default_factory=list,
        description="Findings allowed, by rule and table: [{rule: create-index-blocking, "
        "table: orders}].",
    )

    def allows(self, rule: str, table: str) -> bool:
        """Whether an `allow` entry covers this rule on this table (`public.` aside)."""
        name = table.removeprefix("public.")
        return any(a.rule == rule and a.table.removeprefix("public.") == name for a in self.allow)
