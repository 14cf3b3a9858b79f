"""cli/daemon.control: --status, --stop and 'already runs' for the background services' commands."""

import click
from click.testing import CliRunner

from modelog.cli.daemon import control


def invoke(info, *args):
    stopped = []

    @click.command()
    @click.option("--status", is_flag=True)
    @click.option("--stop", is_flag=True)
    @click.pass_context
    def svc(ctx, status, stop):
        def stopper():
            stopped.append(True)
            return bool(info)

        if control(ctx, info, status=status, stop=stop, stopper=stopper, describe=lambda i: f"pid={i['pid']}",
                   already="a svc already runs at {url} (pid {pid})"):
            return
        click.echo("started")

    result = CliRunner().invoke(svc, list(args))
    return result, stopped


def test_status_says_what_runs_and_exits_1_when_nothing_does():
    result, _ = invoke({"pid": 42, "url": "u"}, "--status")
    assert (result.exit_code, result.output) == (0, "running  pid=42\n")
    result, _ = invoke(None, "--status")
    assert (result.exit_code, result.output) == (1, "not running\n")


def test_stop_calls_the_stopper_and_says_whether_something_ran():
    result, stopped = invoke({"pid": 42, "url": "u"}, "--stop")
    assert (result.exit_code, result.output, stopped) == (0, "stopped\n", [True])
    result, stopped = invoke(None, "--stop")
    assert (result.exit_code, result.output, stopped) == (0, "not running\n", [True])


def test_a_second_one_is_refused_with_the_running_ones_details_and_none_running_starts():
    result, stopped = invoke({"pid": 42, "url": "http://x"}, )
    assert result.exit_code == 1 and "a svc already runs at http://x (pid 42)" in result.output and not stopped
    result, _ = invoke(None)
    assert (result.exit_code, result.output) == (0, "started\n")
