"""`poolvisor task ...`: long operations (migrations, consolidations) the server runs as tasks.

`vm migrate` and `pool consolidate --apply` wait for their task with a progress bar by default
(`--no-wait` prints the id instead); `task wait ID` waits for any task. A task that ends other
than `succeeded` is an error (one line, exit 1) carrying the task's own error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated, Any

import typer

from poolvisor.cli.client import Api, JsonOpt, TokenOpt, UrlOpt, api_path
from poolvisor.cli.errors import fail
from poolvisor.cli.parse import number
from poolvisor.cli.render import bar_label, emit_json, progress_bar, say, table

app = typer.Typer(help="Long operations (migrations, consolidations): list, show, wait (client of the "
                  "REST API).", no_args_is_help=True)
TaskIdArg = Annotated[int, typer.Argument(min=1, max=2**63 - 1, help="Task id.")]
TimeoutOpt = Annotated[float | None, typer.Option(
    "--timeout", parser=number, help="Give up waiting after this many seconds (the task goes on).")]
ACTIVE = ("queued", "running")
STATES = ("queued", "running", "succeeded", "failed", "cancelled", "rolled_back")
POLL_S = 0.2


def task_path(task_id: int) -> Any:
    return api_path("tasks", str(int(task_id)))


def wait_for(api: Api, task: dict[str, Any], *, timeout: float | None = None,
             show_progress: bool = True) -> dict[str, Any]:
    """Poll until the task is final, with a Rich progress bar (its latest log entry as the label)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    label = f"task {task['id']} {task['kind']} {task['subject']}"
    with progress_bar(enabled=show_progress) as bar:
        shown = bar.add_task(bar_label(label), total=1.0)
        while task["state"] in ACTIVE:
            if deadline is not None and time.monotonic() > deadline:
                raise fail(f"task {task['id']} is still {task['state']} after {timeout:g} s "
                           f"(it goes on; see 'poolvisor task show {task['id']}')")
            time.sleep(POLL_S)
            task = api.get(task_path(int(task["id"])))
            last = (task.get("entries") or [{}])[-1].get("message", task["state"])
            bar.update(shown, completed=float(task["progress"]),
                       description=bar_label(f"{label}: {last}"))
    return task


def finish(task: dict[str, Any]) -> None:
    """Exit 1 with the task's error unless it succeeded."""
    if task["state"] != "succeeded":
        raise fail(f"task {task['id']} ({task['kind']} {task['subject']}) {task['state']}: "
                   f"{task.get('error') or 'no error recorded'}")


def queued(task: dict[str, Any], as_json: bool) -> None:
    """What `--no-wait` prints: the task (JSON) or its id and how to follow it."""
    if as_json:
        emit_json(task)
    else:
        say("task {} queued ({} {}); follow it with: poolvisor task wait {}", task["id"], task["kind"],
            task["subject"], task["id"])


def follow(api: Api, sent: dict[str, Any], as_json: bool, no_wait: bool,
           succeeded: Callable[[dict[str, Any], dict[str, Any]], None],
           otherwise: Callable[[dict[str, Any], dict[str, Any]], None] | None = None) -> None:
    """The end of every command that starts a task (202): `--no-wait` prints its id; else wait
    with a progress bar, then print the task as JSON, or `succeeded(result, task)` (or
    `otherwise(result, task)` when it did not succeed), and exit 1 unless it succeeded."""
    if no_wait:
        queued(sent, as_json)
        return
    t = wait_for(api, sent, show_progress=not as_json)
    r = t.get("result") or {}
    if as_json:
        emit_json(t)
    elif t["state"] == "succeeded":
        succeeded(r, t)
    elif otherwise is not None:
        otherwise(r, t)
    finish(t)


def _show(t: dict[str, Any]) -> None:
    table(f"Task {t['id']}", ("field", "value"), [
        ("kind", t["kind"]), ("state", t["state"]), ("subject", t["subject"]),
        ("project", t.get("project") or "–"), ("progress", f"{100 * float(t['progress']):.0f} %"),
        ("error", t.get("error") or "–"), ("parent", str(t["parent"]) if t.get("parent") else "–"),
        ("created", t["created_at"]), ("finished", t.get("finished_at") or "–")])
    table("Log", ("time", "message"), [(e["time"], e["message"]) for e in t.get("entries") or []])


@app.command("list")
def list_(state: Annotated[str | None, typer.Option(
              "--state", help=f"Only tasks in this state ({', '.join(STATES)}).")] = None,
          project: Annotated[str | None, typer.Option(
              "--project", "-p", envvar="POOLVISOR_PROJECT", help="Project (admins).")] = None,
          url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """List tasks, newest first (members: their project's)."""
    if state is not None and state not in STATES:
        raise fail(f"--state must be one of {', '.join(STATES)}", 2)
    with Api(url, token) as api:
        tasks = api.get(api_path("tasks"), state=state, project=project)
    if as_json:
        emit_json(tasks)
        return
    table("Tasks", ("id", "kind", "state", "progress", "subject", "error"),
          [(str(t["id"]), t["kind"], t["state"], f"{100 * float(t['progress']):.0f} %", t["subject"],
            t.get("error") or "–") for t in tasks])


@app.command()
def show(task_id: TaskIdArg, url: UrlOpt = None, token: TokenOpt = None, as_json: JsonOpt = False) -> None:
    """Show one task: state, progress, result or error, and its log."""
    with Api(url, token) as api:
        t = api.get(task_path(task_id))
    if as_json:
        emit_json(t)
        return
    _show(t)


@app.command()
def cancel(task_id: TaskIdArg, no_wait: Annotated[bool, typer.Option(
               "--no-wait", help="Return once the cancel is requested.")] = False,
           timeout: TimeoutOpt = None, url: UrlOpt = None, token: TokenOpt = None,
           as_json: JsonOpt = False) -> None:
    """Cancel a task: a queued one at once; a running migration is aborted (the workload stays on
    its source), a consolidation stops before its next move. Waits for it to end unless --no-wait."""
    if timeout is not None and timeout <= 0:
        raise fail("--timeout must be > 0 seconds", 2)
    with Api(url, token) as api:
        t = api.post(api_path("tasks", str(int(task_id)), "cancel"))
        if not no_wait:
            t = wait_for(api, t, timeout=timeout, show_progress=not as_json)
    if as_json:
        emit_json(t)
    else:
        say("task {} ({} {}) {}", t["id"], t["kind"], t["subject"],
            t["state"] if t["state"] not in ACTIVE else f"{t['state']}, cancel requested")


@app.command()
def wait(task_id: TaskIdArg, timeout: TimeoutOpt = None, url: UrlOpt = None, token: TokenOpt = None,
         as_json: JsonOpt = False) -> None:
    """Wait for a task to end (progress bar); exit 1 unless it succeeded."""
    if timeout is not None and timeout <= 0:
        raise fail("--timeout must be > 0 seconds", 2)
    with Api(url, token) as api:
        t = wait_for(api, api.get(task_path(task_id)), timeout=timeout, show_progress=not as_json)
    if as_json:
        emit_json(t)
    else:
        say("task {} ({} {}) {}", t["id"], t["kind"], t["subject"], t["state"])
    finish(t)
