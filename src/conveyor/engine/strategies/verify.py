"""Where a deploy checks its releases after traffic: one `Verify` step at the end of the plan.

>>> from conveyor.config.models import VerifyConfig
>>> verify = VerifyConfig(bake=30.0, smoke=[{"path": "/"}])
>>> [s.describe() for s in plan_verify(verify, "http://127.0.0.1:8080", "api", {})]
['verify for 30s after traffic: 1 smoke test of http://127.0.0.1:8080 every 5s']
>>> plan_verify(None, "http://127.0.0.1:8080", "api", {})
[]
"""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.analysis import STABLE, AnalysisSpec
from conveyor.config.models import AnalysisTemplate, VerifyConfig
from conveyor.engine.plan import Step, Verify


def plan_verify(
    verify: VerifyConfig | None,
    url: str,
    service: str,
    analyses: Mapping[str, AnalysisTemplate],
) -> list[Step]:
    """The environment's `verify:` as the last step of a deploy's plan (none without it).

    It comes after every step of every service: by then each new release has all
    its traffic (a canary or blue-green is promoted, the old instances are warm or
    stopped). The analysis is judged on thresholds and metrics only (after the
    promotion nothing is left to compare with); its spec is journaled as plans
    keep it (normalized, secrets redacted).
    """
    if verify is None:
        return []
    spec = {}
    if verify.analysis is not None:
        template = analyses[verify.analysis]
        spec = AnalysisSpec.from_dict(template.spec_dict(STABLE, comparative=False)).to_dict()
    tests = tuple(t.model_dump(mode="json", exclude_none=True) for t in verify.smoke)
    return [
        Verify(
            service,
            bake=verify.bake,
            interval=verify.interval,
            url=url,
            tests=tests,
            analysis=verify.analysis or "",
            spec=spec,
        )
    ]
