"""What repeated wrong health answers mean: counting, the body line, the hint by status."""

from __future__ import annotations

import pytest

from conveyor.checks.answers import Answer, WrongAnswers, explain, first_line, hint_for

LOGS = "conveyor logs staging web"


def test_same_wrong_status_in_a_row_reaches_the_threshold():
    wrong = WrongAnswers(threshold=3, expect_status=200)
    assert [wrong.observe(Answer(400)) for _ in range(3)] == [False, False, True]
    assert (wrong.status, wrong.count) == (400, 3)


@pytest.mark.parametrize(
    "answers",
    [
        [Answer(400), Answer(400), Answer(500), Answer(400)],  # another status
        [Answer(400), Answer(400), None, Answer(400)],  # connection refused in between
        [Answer(400), Answer(400), Answer(200), Answer(400)],  # a pass in between
    ],
)
def test_anything_else_in_between_starts_the_count_again(answers):
    wrong = WrongAnswers(threshold=3, expect_status=200)
    assert not any(wrong.observe(a) for a in answers)
    assert wrong.count == 1


def test_answers_of_the_start_period_and_refusals_never_count():
    wrong = WrongAnswers(threshold=2, expect_status=200)
    assert not any(wrong.observe(Answer(503), counting=False) for _ in range(10))
    assert not any(wrong.observe(None) for _ in range(10))
    assert not wrong.observe(Answer(503))
    assert wrong.observe(Answer(503))


def test_the_expected_status_is_not_wrong_even_when_it_is_not_200():
    wrong = WrongAnswers(threshold=1, expect_status=204)
    assert not wrong.observe(Answer(204))
    assert wrong.observe(Answer(200))


def test_first_line_of_an_html_page_is_its_title():
    django = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta charset="utf-8">\n'
        "  <title>DisallowedHost\n          at /health</title>\n</head><body>...</body></html>"
    )
    assert first_line(django) == "DisallowedHost at /health"
    assert first_line("<html><body><h1>Not &amp; found</h1><p>x</p></body></html>") == (
        "Not & found"
    )


def test_first_line_masks_secrets_and_is_truncated():
    assert first_line("\n  error: token=abc123 and s3cr3tvalue\nsecond", ["s3cr3tvalue"]) == (
        "error: token=*** and ***"
    )
    assert first_line('DATABASE_PASSWORD: "hunter2" refused') == "DATABASE_PASSWORD: *** refused"
    line = first_line("x" * 500, limit=20)
    assert line == "x" * 17 + "..."
    assert first_line("") == ""


@pytest.mark.parametrize(
    ("answer", "path", "words"),
    [
        (Answer(400), "/health", ["ALLOWED_HOSTS", "127.0.0.1", "Host header"]),
        (
            Answer(301, location="https://127.0.0.1:24001/health"),
            "/health",
            ["HTTPS", "SECURE_SSL_REDIRECT", "health.path"],
        ),
        (
            Answer(308, location="/health/"),
            "/health",
            ["trailing slash", "health.path", "/health/"],
        ),
        (Answer(301, location="/healthz"), "/healthz/", ["trailing slash", "/healthz"]),
        (Answer(302, location="/accounts/login/?next=/"), "/", ["login", "health.path"]),
        (Answer(404), "/helth", ["no page at /helth", "health.path"]),
        (Answer(500), "/health", ["the app fails", LOGS]),
        (Answer(503), "/health", [LOGS]),
        (Answer(403), "/admin", ["login", "health.path"]),
        (Answer(418), "/health", ["expect_status", LOGS]),
    ],
)
def test_hint_by_status(answer, path, words):
    hint = hint_for(answer, path, LOGS)
    for word in words:
        assert word in hint, hint


def test_explain_names_the_status_the_body_line_and_the_count():
    message, hint = explain(
        Answer(400, "Bad Request (400)"), 3, "http://127.0.0.1:24001/health", 200, LOGS
    )
    assert message == (
        "GET http://127.0.0.1:24001/health answered 400 Bad Request 3 times in a row "
        '(expected 200); body: "Bad Request (400)"'
    )
    assert "ALLOWED_HOSTS" in hint
    message, _ = explain(Answer(301, "", "https://x/health"), 3, "http://h:1/health", 200, LOGS)
    assert "301 Moved Permanently" in message and "location: https://x/health" in message
    message, _ = explain(Answer(599), 2, "http://h:1/", 200, LOGS)
    assert "answered 599 2 times" in message
