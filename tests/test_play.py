"""``toolgym play``: shell-style input, JSON errors shown, no turn spent on help or mistakes, in-game help.

The line parser is tested on the real trip tools (every input form, and properties over random
strings); the game itself is played through a real process's stdin.
"""

import json
import shlex
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolgym.cli.play import help_text, parse_line
from toolgym.synth import get_family
from toolgym.synth.fly import SynthSource

TASK = "trip-fly-s3-d1"


@pytest.fixture(scope="module")
def tools():
    task, _ = SynthSource(get_family("trip"), None).get(TASK)
    return task.tools


def test_a_value_with_a_space_passes_quoted_either_way(tools):
    for line in ('get_hotel_info name="Stawil Lodge"', "get_hotel_info name='Stawil Lodge'"):
        parsed = parse_line(line, tools)
        assert parsed.kind == "action" and parsed.calls == [("get_hotel_info", {"name": "Stawil Lodge"})]
    parsed = parse_line('get_inter_city_transport from_city="Ka eu" to_city=Drandstead', tools)
    assert parsed.calls == [("get_inter_city_transport", {"from_city": "Ka eu", "to_city": "Drandstead"})]


def test_an_unquoted_value_with_a_space_says_how_to_quote_it(tools):
    parsed = parse_line("get_hotel_info name=Stawil Lodge", tools)
    assert parsed.kind == "error"
    assert parsed.text == "'Lodge' is not key=value; quote a value with spaces: name=\"Stawil Lodge\""
    assert 'name="The Old Mill"' in parse_line("get_hotel_info name=The Old Mill", tools).text


def test_malformed_json_shows_the_json_error(tools):
    parsed = parse_line('get_hotel_info {"name": "x",}', tools)
    assert parsed.kind == "error"
    assert "not valid JSON: Expecting property name enclosed in double quotes at column 14" in parsed.text
    assert parse_line('submit ["a"]', tools).text == "the arguments must be a JSON object {…}, got list"


def test_other_forms(tools):
    assert parse_line("", tools).kind == "empty" and parse_line("   ", tools).kind == "empty"
    assert parse_line("help", tools).kind == "help" and parse_line(" ? ", tools).kind == "help"
    assert parse_line("quit", tools).kind == "quit" and parse_line("exit", tools).kind == "quit"
    assert parse_line("get_all_cities page=2", tools).calls == [("get_all_cities", {"page": 2})]
    assert parse_line("get_all_cities\tpage=2", tools).calls == [("get_all_cities", {"page": 2})]
    assert parse_line("submit answer='[{\"date\": 1}]'", tools).calls == [("submit", {"answer": [{"date": 1}]})]
    assert parse_line("get_hotel_info name=1984", tools).calls == [("get_hotel_info", {"name": "1984"})]  # a string
    big = parse_line('get_all_cities {"page": 99999999999999999999999}', tools)  # the writer falls back to json
    assert (
        big.calls == [("get_all_cities", {"page": 99999999999999999999999})] and "99999999999999999999999" in big.text
    )
    lone = parse_line('get_hotel_info {"name": "\\udc80"}', tools)  # sent if the renderer can escape it
    assert lone.calls == [("get_hotel_info", {"name": "\udc80"})] or "cannot be encoded" in lone.text
    assert parse_line("get_hotl name=x", tools).text == "unknown tool 'get_hotl'; did you mean get_hotel_info?"
    assert parse_line('get_hotel_info name="open', tools).text.startswith("No closing quotation")
    assert "given twice" in parse_line("get_hotel_info name=a name=b", tools).text
    raw = '<tool_call>{"name": "get_all_cities", "arguments": {}}</tool_call><|end|>'
    assert parse_line(raw, tools).kind == "action" and parse_line(raw, tools).text == raw


def test_help_names_every_tool_and_argument_and_how_to_submit_and_quit(tools):
    text = help_text(tools)
    for t in tools:
        fn = t["function"]
        assert fn["name"] in text
        for arg in fn["parameters"].get("properties", {}):
            assert f"{arg}:" in text
    assert "[page: integer]" in text and "get_hotel_info(name: string)" in text
    assert "submit" in text and "quit" in text and "key=value" in text and "{json}" in text


names = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=8).filter(str.isidentifier)
# Every code point a terminal can send (quotes, '=', backslashes, markup strings, control
# characters): lone surrogates cannot be typed, and JSON's renderer refuses them (tested below).
typable = st.characters(blacklist_categories=("Cs",))
anything = st.text(typable, max_size=60)


@settings(max_examples=300, deadline=None)
@given(frm=anything, to=anything)
def test_quoted_strings_round_trip_for_string_parameters(tools, frm, to):
    line = f"get_inter_city_transport from_city={shlex.quote(frm)} to_city={shlex.quote(to)}"
    parsed = parse_line(line, tools)
    assert parsed.kind == "action", parsed.text
    assert parsed.calls == [("get_inter_city_transport", {"from_city": frm, "to_city": to})]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(typable, max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(typable, max_size=5), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(args=st.dictionaries(names, json_values, max_size=4))
def test_json_arguments_round_trip(tools, args):
    parsed = parse_line("get_hotel_info " + json.dumps(args), tools)
    assert parsed.kind == "action" and parsed.calls == [("get_hotel_info", args)]


@settings(max_examples=500, deadline=None)
@given(line=st.text(max_size=80))
def test_no_line_crashes_and_only_actions_use_a_turn(tools, line):
    parsed = parse_line(line, tools)
    assert parsed.kind in ("action", "help", "quit", "empty", "error")
    assert bool(parsed.text) == (parsed.kind in ("action", "error"))  # an action to send, or what is wrong
    if parsed.calls:
        assert parsed.kind == "action" and parsed.calls[0][0] in {t["function"]["name"] for t in tools}


def play(*lines):
    return subprocess.run(
        [sys.executable, "-m", "toolgym.cli", "play", TASK],
        input="".join(line + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_play_through_stdin_with_spaces_quotes_and_json_errors():
    proc = play(
        "get_hotel_info name=Stawil Lodge",
        'get_hotel_info name="Stawil Lodge"',
        "get_hotel_info name='Stawil Lodge'",
        'get_hotel_info {"name": "x",}',
        "quit",
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "not sent (no turn used): 'Lodge' is not key=value; quote a value with spaces: name=\"Stawil Lodge\"" in out
    assert out.count("no hotel named 'Stawil Lodge'") == 2  # both quoted forms reached the tool whole
    assert "not valid JSON: Expecting property name enclosed in double quotes" in out
    assert "no tool call" not in out and out.rstrip().endswith("stopped")


def test_empty_lines_help_and_mistakes_use_no_turn():
    """Far more of them than the episode has turns, then a submit: the episode still ends by the submit."""
    junk = ["", "help", "?", "get_hotel_info name=a b", "nope", 'submit {"answer": '] * 40
    proc = play(*junk, 'submit {"answer": []}')
    assert proc.returncode == 0, proc.stderr
    assert "episode over: reward 0.0" in proc.stdout and "truncated" not in proc.stdout
    assert '"name": "submit"' in proc.stdout
    assert proc.stdout.count("input forms (one per turn)") == 80


def test_play_help_and_end_of_input():
    proc = play("help")
    assert proc.returncode == 0, proc.stderr
    assert "get_hotel_info(name: string)" in proc.stdout and "submit(answer: array)" in proc.stdout
    assert proc.stdout.rstrip().endswith("stopped (end of input)")


def test_help_examples_use_the_task_s_own_tools():
    """A domains task's help shows its own tools in the input forms, not trip's."""
    by_id = {"properties": {"id": {"type": "string"}}, "required": ["id"]}
    tools = [
        {"function": {"name": "get_rental", "parameters": by_id}},  # no description: the help still works
        {"function": {"name": "find_rentals", "parameters": {"properties": {"page": {"type": "integer"}}}}},
        {"function": {"name": "submit", "parameters": {"properties": {"answer": {"type": "number"}}}}},
    ]
    text = help_text(tools)
    assert "e.g. find_rentals" in text and 'get_rental id="Two Words"' in text and "get_all_cities" not in text
