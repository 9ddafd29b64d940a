"""Roles: what a token may do, in which environments.

viewer reads; deployer reads and deploys, promotes, pauses, resumes, aborts and
rolls back; approver reads and approves or rejects (the environment's
`approvals:` rules still apply: the four-eyes rule among them); admin does all
of it and reads the audit. A token made with `--env` acts in those environments
only.
"""

from __future__ import annotations

import enum

from conveyor.store.records import TokenRecord


class Action(enum.Enum):
    READ = "read"
    DEPLOY = "deploy"  # deploy, promote, pause, resume, abort, rollback
    APPROVE = "approve"  # approve, reject
    ADMIN = "admin"  # the audit (and, later, tokens over the API)


GRANTS: dict[str, frozenset[Action]] = {
    "viewer": frozenset({Action.READ}),
    "deployer": frozenset({Action.READ, Action.DEPLOY}),
    "approver": frozenset({Action.READ, Action.APPROVE}),
    "admin": frozenset(Action),
}


def refusal(token: TokenRecord, action: Action, environment: str | None) -> str | None:
    """Why `token` may not do `action` (in `environment`); None when it may.

    An `ADMIN` action concerns every environment: a token limited to some is refused.
    """
    if action not in GRANTS.get(token.role, frozenset()):
        return f"token {token.name} ({token.role}) may not {action.value}"
    if token.environments:
        if action is Action.ADMIN:
            return f"token {token.name} is limited to {', '.join(token.environments)}"
        if environment is not None and environment not in token.environments:
            return (
                f"token {token.name} may not act in {environment} "
                f"(only in {', '.join(token.environments)})"
            )
    return None


def visible(token: TokenRecord, environments: list[str]) -> list[str]:
    """The environments `token` may see, in order."""
    if not token.environments:
        return environments
    return [name for name in environments if name in token.environments]
