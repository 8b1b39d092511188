"""The A2A task engine on plain values: no sockets, no database, no event loop."""

from __future__ import annotations

import itertools

import pytest

from guildnet.protocols import a2a
from guildnet.protocols.a2a import Effect, Emit, Settle, Store, TaskMachine, TaskRecord


def _message(**fields: str) -> a2a.JSON:
    return {**a2a.skill_request({"text": "hi"}), **fields}


def _machine(*, reveal: bool = False, record: TaskRecord | None = None, message: a2a.JSON | None = None
             ) -> TaskMachine:
    ticks = itertools.count(1)
    admission = a2a.admit(message or _message(), record, running=False)
    return TaskMachine("echo", admission, "echo", reveal=reveal, clock=lambda: float(next(ticks)))


def _kinds(effects: list[Effect]) -> list[str]:
    """Each effect as a short word: store-insert, store-update, the emitted event's kind, settle."""
    out = []
    for effect in effects:
        if isinstance(effect, Store):
            out.append("insert" if effect.new else "update")
        elif isinstance(effect, Emit):
            out.append(next(iter(effect.event)))
        else:
            assert isinstance(effect, Settle)
            out.append("settle")
    return out


def _waiting() -> TaskRecord:
    task = a2a.new_task("t1", "c1", [_message()], a2a.INPUT_REQUIRED)
    return TaskRecord("echo", task, "echo")


def test_a_new_message_gets_fresh_task_and_context_ids() -> None:
    admission = a2a.admit(_message(contextId="mine"), None, running=False)
    assert admission.record is None and admission.context_id == "mine"
    assert admission.message["taskId"] == admission.task_id and admission.message["contextId"] == "mine"
    assert a2a.admit(_message(), None, running=False).task_id != admission.task_id


@pytest.mark.parametrize(("record", "running", "fields", "code"), [
    ("waiting", True, {}, a2a.UNSUPPORTED_OPERATION),
    (None, False, {}, a2a.TASK_NOT_FOUND),
    ("another caller's", False, {}, a2a.TASK_NOT_FOUND),
    ("completed", False, {}, a2a.UNSUPPORTED_OPERATION),
    ("waiting", False, {"contextId": "another"}, a2a.INVALID_PARAMS),
])
def test_follow_ups_that_cannot_continue_a_task_are_refused(record: str | None, running: bool,
                                                            fields: dict[str, str], code: int) -> None:
    existing = _waiting() if record else None
    if record == "another caller's":
        assert existing is not None
        existing.owner = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"
    if record == "completed":
        assert existing is not None
        existing.task["status"] = a2a.new_status(a2a.COMPLETED)
    with pytest.raises(a2a.A2AError) as refused:
        a2a.admit(_message(taskId="t1", **fields), existing, running=running)
    assert refused.value.code == code


def test_a_follow_up_joins_the_task_and_its_context() -> None:
    record = _waiting()
    machine = _machine(record=record, message=_message(taskId="t1"))
    assert machine.context_id == "c1" and len(record.task["history"]) == 2
    assert _kinds(machine.finish(a2a.COMPLETED)) == ["update", "statusUpdate", "settle"]


def test_a_blocking_run_is_stored_once_when_it_settles() -> None:
    machine = _machine()
    assert _kinds(machine.artifact([a2a.text_part("x")])) == ["task", "artifactUpdate"]
    effects = machine.finish(a2a.COMPLETED)
    assert _kinds(effects) == ["insert", "statusUpdate", "settle"]
    assert machine.settled and not machine.is_stored  # durable only once the caller reports the store
    machine.stored()
    assert machine.is_stored and machine.record is not None and machine.record.state == a2a.COMPLETED


def test_a_revealed_task_is_stored_before_its_id_leaves_and_again_when_it_settles() -> None:
    machine = _machine(reveal=True)
    assert _kinds(machine.finish(a2a.COMPLETED)) == ["insert", "task", "update", "statusUpdate", "settle"]


def test_a_failed_insert_is_inserted_again_by_the_next_store() -> None:
    machine = _machine(reveal=True)
    assert _kinds(machine.start()) == ["insert", "task"]
    machine.store_failed()
    assert _kinds(machine.crashed("boom")) == ["insert", "statusUpdate", "settle"]
    assert machine.record is not None and machine.record.task["status"]["message"]["parts"] == [{"text": "boom"}]


def test_a_message_reply_creates_no_task_and_allows_no_task_events() -> None:
    machine = _machine()
    assert _kinds(machine.respond([a2a.text_part("hello")])) == ["message", "settle"]
    assert machine.record is None and machine.reply is not None
    with pytest.raises(RuntimeError):
        machine.working()
    assert machine.crashed("late") == [] and machine.returned() == []


def test_appended_parts_join_the_artifact_already_sent() -> None:
    machine = _machine()
    machine.artifact([a2a.text_part("a")], artifact_id="art")
    effects = machine.artifact([a2a.text_part("b")], artifact_id="art", append=True, last_chunk=True)
    event = effects[0]
    assert isinstance(event, Emit) and event.event["artifactUpdate"]["append"] is True
    assert machine.record is not None
    assert machine.record.task["artifacts"] == [{"artifactId": "art", "parts": [{"text": "a"}, {"text": "b"}]}]


def test_a_stopped_run_is_canceled_or_failed_by_shutdown_and_a_settled_one_is_left_alone() -> None:
    canceled, shut_down = _machine(), _machine()
    for machine in (canceled, shut_down):
        machine.working("busy")
    canceled.stopped(shutting_down=False)
    shut_down.stopped(shutting_down=True)
    assert canceled.record is not None and canceled.record.state == a2a.CANCELED
    assert shut_down.record is not None and shut_down.record.state == a2a.FAILED
    assert shut_down.stopped(shutting_down=True) == []
    assert _machine().stopped(shutting_down=False) == []  # no task was created: nothing to cancel


def test_an_executor_that_returns_without_settling_completes_its_task() -> None:
    machine = _machine()
    assert _kinds(machine.returned()) == ["task", "insert", "statusUpdate", "settle"]
    assert machine.record is not None and machine.record.state == a2a.COMPLETED


def test_a_waiting_task_is_canceled_by_a_state_change_and_a_finished_one_cannot_be() -> None:
    record = _waiting()
    assert _kinds(a2a.cancel_waiting(record, clock=lambda: 5.0)) == ["update", "statusUpdate", "settle"]
    assert record.state == a2a.CANCELED and record.updated == 5.0
    with pytest.raises(a2a.A2AError) as refused:
        a2a.cancel_waiting(record)
    assert refused.value.code == a2a.TASK_NOT_CANCELABLE


def test_finish_takes_only_settling_states() -> None:
    with pytest.raises(ValueError, match="terminal or interrupted"):
        _machine().finish(a2a.WORKING)
