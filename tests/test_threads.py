"""Thread policy: passive OpenMP waiting by default, the user's choice kept, the count recorded."""

from __future__ import annotations

from harness.threads import configure_wait_policy, fair_share_threads, thread_record


def test_passive_wait_policy_is_the_default_and_a_user_choice_is_kept() -> None:
    env: dict[str, str] = {}
    assert configure_wait_policy(env) == "PASSIVE" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    assert configure_wait_policy(env) == "ACTIVE"


def test_fair_share_only_when_oversubscribed() -> None:
    assert fair_share_threads(2, 1.5) is None
    assert fair_share_threads(2, 12.0) == 1
    assert fair_share_threads(16, 32.0) == 8


def test_thread_record_has_count_policy_and_load() -> None:
    rec = thread_record(3)
    assert rec["threads"] == 3
    assert {"omp_wait_policy", "cpu_count", "load_average"} <= set(rec)


def test_the_cli_sets_the_policy_before_torch_loads(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os

    from harness.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    main(["schema"])
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
