"""The pipeline's job graph: validation and the order jobs may run in. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def graph_issues(needs: Mapping[str, Sequence[str]]) -> list[str]:
    """What is wrong with a job graph (`job -> the jobs it needs`), one line each.

    >>> graph_issues({"a": ["b"], "b": ["a"], "c": ["nope"]})
    ['c needs "nope", which is not a job', 'a cycle: a -> b -> a']
    """
    issues = [
        f'{job} needs "{dep}", which is not a job'
        for job, deps in needs.items()
        for dep in deps
        if dep not in needs
    ]
    cycle = find_cycle(needs)
    if cycle:
        issues.append("a cycle: " + " -> ".join(cycle))
    return issues


def find_cycle(needs: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle of the graph as a closed path, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(job: str) -> list[str] | None:
        state[job] = 1
        path.append(job)
        for dep in needs.get(job, ()):
            if dep not in needs:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[job] = 2
        return None

    for job in needs:
        if job not in state:
            found = visit(job)
            if found:
                return found
    return None


def ready(needs: Mapping[str, Sequence[str]], passed: set[str], settled: set[str]) -> list[str]:
    """Jobs that can start now: not settled (passed, failed, skipped, running), all their
    needs passed. In the graph's order, so runs are reproducible.

    >>> ready({"lint": [], "test": ["lint"], "build": ["test"]}, set(), set())
    ['lint']
    >>> ready({"lint": [], "test": ["lint"], "docs": []}, {"lint"}, {"lint"})
    ['test', 'docs']
    """
    return [
        job
        for job, deps in needs.items()
        if job not in settled and all(dep in passed for dep in deps)
    ]


def blocked_by(needs: Mapping[str, Sequence[str]], failed: set[str]) -> dict[str, str]:
    """Jobs that can never run because a job they need (directly or not) failed:
    job -> the failed job that blocks it.

    >>> blocked_by({"lint": [], "test": ["lint"], "build": ["test"], "docs": []}, {"lint"})
    {'test': 'lint', 'build': 'lint'}
    """
    out: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for job, deps in needs.items():
            if job in out or job in failed:
                continue
            for dep in deps:
                cause = dep if dep in failed else out.get(dep)
                if cause is not None:
                    out[job] = cause
                    changed = True
                    break
    return out
