"""The IVR interpreter: every branch of a caller's journey, pure and fast."""

from __future__ import annotations

import random

import pytest

from engine.domain.ivr import (
    CancelTimer,
    Command,
    Digit,
    DtmfOutcome,
    Entered,
    Event,
    Hangup,
    HttpLookup,
    InputMode,
    IvrAction,
    IvrMenu,
    IvrOption,
    IvrState,
    LookupResult,
    MenuProblem,
    Phase,
    Play,
    PromptFinished,
    RecordDtmf,
    RecordingDone,
    RecordMessage,
    SayDigits,
    SayMode,
    SayNumber,
    SetVariable,
    StartInputTimer,
    StartInterDigitTimer,
    Step,
    StopPrompt,
    Timeout,
    Transfer,
    TransferFailed,
    Transferred,
    TransferTargetType,
    check_menus,
    render,
    step,
)
from engine.errors import InvalidInput

MENUS: dict[str, IvrMenu] = {
    "main": IvrMenu(
        "main",
        greeting="sound:main",
        invalid_prompt="sound:invalid",
        timeout_prompt="sound:timeout",
        max_retries=2,
        timeout_ms=5000,
        options={
            "1": IvrOption(IvrAction.SUBMENU, menu="sales"),
            "2": IvrOption(IvrAction.SUBMENU, menu="account"),
            "0": IvrOption(
                IvrAction.TRANSFER,
                target_type=TransferTargetType.AGENT,
                target="1001",
                failure_prompt="sound:busy",
            ),
            "9": IvrOption(IvrAction.REPEAT),
            "*": IvrOption(IvrAction.BACK),
        },
        fallback=IvrOption(
            IvrAction.TRANSFER, target_type=TransferTargetType.ENDPOINT, target="PJSIP/operator"
        ),
    ),
    "sales": IvrMenu(
        "sales",
        greeting="sound:sales",
        max_retries=0,
        options={
            "1": IvrOption(
                IvrAction.TRANSFER,
                prompt="sound:connecting",
                target_type=TransferTargetType.NUMBER,
                target="+14155550100",
            ),
            "3": IvrOption(
                IvrAction.RECORD_MESSAGE, prompt="sound:leave-message", max_duration_s=60
            ),
            "4": IvrOption(
                IvrAction.SET_VARIABLE, name="skill", value="sales-{caller}", next="main"
            ),
            "5": IvrOption(IvrAction.SUBMENU, menu="main"),
            "9": IvrOption(IvrAction.REPEAT),
            "*": IvrOption(IvrAction.BACK),
        },
    ),
    "account": IvrMenu(
        "account",
        greeting="sound:enter-account",
        invalid_prompt="sound:bad-account",
        input_mode=InputMode.UNTIL_TERMINATOR,
        terminator="#",
        input_length=6,
        inter_digit_timeout_ms=2000,
        variable="acct",
        options={
            "collected": IvrOption(
                IvrAction.HTTP_LOOKUP,
                url="https://erp.example/balance/{acct}",
                params={"account": "{acct}", "who": "{caller}"},
                timeout_ms=1500,
                result_variable="balance",
                say=SayMode.NUMBER,
                next="main",
                failure_prompt="sound:lookup-failed",
            )
        },
    ),
    "pin": IvrMenu(
        "pin",
        greeting="sound:enter-pin",
        input_mode=InputMode.FIXED_LENGTH,
        input_length=4,
        variable="pin",
        options={"collected": IvrOption(IvrAction.HANGUP, prompt="sound:thanks")},
    ),
}


def run(
    state: IvrState, *events: Event, menus: dict[str, IvrMenu] = MENUS
) -> tuple[IvrState, list[Command]]:
    commands: list[Command] = []
    for event in events:
        result = step(menus, state, event)
        state = result.state
        commands.extend(result.commands)
    return state, commands


def waiting_in(menu: str, *path: str) -> IvrState:
    """A call that entered ``menu``, pressed ``path`` after each prompt, and is waiting."""
    state, _ = run(IvrState(), Entered(menu), PromptFinished())
    for key in path:
        state, _ = run(state, Digit(key), PromptFinished())
    assert state.phase is Phase.WAITING
    return state


# -- entering and the two-level walk ---------------------------------------------------------


def test_entering_plays_the_greeting_then_arms_the_input_timer() -> None:
    state, commands = run(IvrState(), Entered("main"))
    assert commands == [Play("sound:main")]
    assert state.phase is Phase.PROMPTING
    assert state.stack == ("main",)
    state, commands = run(state, PromptFinished())
    assert commands == [StartInputTimer(5000)]
    assert state.phase is Phase.WAITING


def test_two_level_menu_walk_ends_in_a_transfer() -> None:
    state = waiting_in("main")
    state, commands = run(state, Digit("1", 1200))
    assert commands == [
        CancelTimer(),
        RecordDtmf("main", "1", DtmfOutcome.OPTION, "1", 1200, attempt=1),
        Play("sound:sales"),
    ]
    assert state.stack == ("main", "sales")
    state, commands = run(state, PromptFinished(), Digit("1", 300))
    assert commands == [
        StartInputTimer(5000),
        CancelTimer(),
        RecordDtmf("sales", "1", DtmfOutcome.OPTION, "1", 300, attempt=1),
        Play("sound:connecting"),
    ]
    assert state.phase is Phase.ANNOUNCING
    state, commands = run(state, PromptFinished())
    assert commands == [Transfer(TransferTargetType.NUMBER, "+14155550100", "sales", "1")]
    state, commands = run(state, Transferred())
    assert commands == []
    assert state.phase is Phase.ENDED


def test_a_menu_without_greeting_waits_with_a_timer_at_once() -> None:
    menus = {"m": IvrMenu("m", options={"1": IvrOption(IvrAction.HANGUP)})}
    _, commands = run(IvrState(), Entered("m"), menus=menus)
    assert commands == [StartInputTimer(5000)]


def test_entering_an_unknown_menu_is_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown menu 'nope'"):
        step(MENUS, IvrState(), Entered("nope"))


# -- invalid keys, silence, retries, fallback --------------------------------------------------


def test_invalid_then_valid() -> None:
    state = waiting_in("main")
    state, commands = run(state, Digit("7", 800))
    assert commands == [
        CancelTimer(),
        RecordDtmf("main", "7", DtmfOutcome.INVALID, None, 800, attempt=1),
        Play("sound:invalid"),
    ]
    state, commands = run(state, PromptFinished())
    assert commands == [Play("sound:main")]
    state, commands = run(state, PromptFinished(), Digit("1", 100))
    assert commands[:3] == [
        StartInputTimer(5000),
        CancelTimer(),
        RecordDtmf("main", "1", DtmfOutcome.OPTION, "1", 100, attempt=2),
    ]
    assert state.stack == ("main", "sales")
    assert state.retries == 0  # a new menu starts a new retry budget


def test_silence_plays_timeout_prompts_then_runs_the_fallback() -> None:
    state = waiting_in("main")
    dtmf: list[RecordDtmf] = []
    for attempt in (1, 2):
        state, commands = run(state, Timeout(5000))
        assert commands == [
            RecordDtmf("main", None, DtmfOutcome.TIMEOUT, None, 5000, attempt=attempt),
            Play("sound:timeout"),
        ]
        state, commands = run(state, PromptFinished(), PromptFinished())
        assert commands == [Play("sound:main"), StartInputTimer(5000)]
    state, commands = run(state, Timeout())
    dtmf = [c for c in commands if isinstance(c, RecordDtmf)]
    assert dtmf == [RecordDtmf("main", None, DtmfOutcome.TIMEOUT, None, None, attempt=3)]
    assert commands[1:] == [Transfer(TransferTargetType.ENDPOINT, "PJSIP/operator", "main", None)]
    assert state.phase is Phase.TRANSFERRING


def test_without_a_fallback_the_caller_hears_goodbye_and_is_hung_up() -> None:
    state = waiting_in("main", "1")  # sales: max_retries 0
    state, commands = run(state, Digit("8", 50))
    assert commands == [
        CancelTimer(),
        RecordDtmf("sales", "8", DtmfOutcome.INVALID, None, 50, attempt=1),
        Play("sound:vm-goodbye"),
    ]
    state, commands = run(state, PromptFinished())
    assert commands == [Hangup()]
    assert state.phase is Phase.ENDED


def test_timeout_and_invalid_options_override_the_retry_prompts() -> None:
    menus = {
        "m": IvrMenu(
            "m",
            greeting="sound:m",
            max_retries=1,
            options={
                "1": IvrOption(IvrAction.HANGUP),
                "timeout": IvrOption(
                    IvrAction.TRANSFER, target_type=TransferTargetType.AGENT, target="operator"
                ),
                "invalid": IvrOption(IvrAction.REPEAT, prompt="sound:try-again"),
            },
        )
    }
    state, _ = run(IvrState(), Entered("m"), PromptFinished(), menus=menus)
    state, commands = run(state, Digit("5", 10), menus=menus)
    assert commands == [
        CancelTimer(),
        RecordDtmf("m", "5", DtmfOutcome.INVALID, "invalid", 10, attempt=1),
        Play("sound:try-again"),
    ]
    state, commands = run(state, PromptFinished(), PromptFinished(), menus=menus)
    assert commands == [Play("sound:m"), StartInputTimer(5000)]
    # the override still counts: the second failure exhausts max_retries=1
    state, commands = run(state, Timeout(5000), menus=menus)
    assert commands == [
        RecordDtmf("m", None, DtmfOutcome.TIMEOUT, None, 5000, attempt=2),
        Play("sound:vm-goodbye"),
    ]


def test_timeout_option_runs_on_silence() -> None:
    menus = {
        "m": IvrMenu(
            "m",
            greeting="sound:m",
            options={
                "timeout": IvrOption(
                    IvrAction.TRANSFER, target_type=TransferTargetType.AGENT, target="operator"
                )
            },
        )
    }
    state, _ = run(IvrState(), Entered("m"), PromptFinished(), menus=menus)
    _, commands = run(state, Timeout(5000), menus=menus)
    assert commands == [
        RecordDtmf("m", None, DtmfOutcome.TIMEOUT, "timeout", 5000, attempt=1),
        Transfer(TransferTargetType.AGENT, "operator", "m", "timeout"),
    ]


# -- barge-in -----------------------------------------------------------------------------------


def test_a_key_during_the_greeting_stops_the_prompt() -> None:
    state, _ = run(IvrState(), Entered("main"))
    state, commands = run(state, Digit("1", 400))
    assert commands == [
        StopPrompt(),
        RecordDtmf("main", "1", DtmfOutcome.OPTION, "1", 400, attempt=1),
        Play("sound:sales"),
    ]


def test_barge_in_drops_the_rest_of_the_queued_prompts() -> None:
    state = waiting_in("main")
    state, _ = run(state, Digit("7", 1))  # invalid prompt playing, greeting queued
    assert state.queue == (Play("sound:main"),)
    state, commands = run(state, Digit("9", 2))  # repeat, pressed over the invalid prompt
    assert commands == [
        StopPrompt(),
        RecordDtmf("main", "9", DtmfOutcome.OPTION, "9", 2, attempt=2),
        Play("sound:main"),
    ]
    state, commands = run(state, PromptFinished())
    assert commands == [StartInputTimer(5000)]


def test_keys_during_an_option_prompt_are_ignored() -> None:
    state = waiting_in("main", "1")
    state, _ = run(state, Digit("1", 5))  # "connecting" plays, then the transfer
    result = step(MENUS, state, Digit("2", 6))
    assert result.commands == ()
    assert result.state == state


def test_events_that_do_not_fit_the_phase_change_nothing() -> None:
    state, _ = run(IvrState(), Entered("main"))
    for event in (Timeout(), LookupResult(True, "1"), TransferFailed("busy"), RecordingDone()):
        assert step(MENUS, state, event) == Step(state)
    assert step(MENUS, IvrState(), Digit("1")).commands == ()


def test_a_non_dtmf_key_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="digit"):
        Digit("x")


# -- back, repeat, stack -----------------------------------------------------------------------


def test_back_returns_to_the_previous_menu() -> None:
    state = waiting_in("main", "1")
    state, commands = run(state, Digit("*", 10))
    assert commands[-1] == Play("sound:main")
    assert state.stack == ("main",)


def test_back_at_the_first_menu_presents_it_again() -> None:
    state = waiting_in("main")
    state, commands = run(state, Digit("*", 10))
    assert commands[-1] == Play("sound:main")
    assert state.stack == ("main",)


def test_repeat_replays_the_greeting_without_counting_a_retry() -> None:
    state = waiting_in("main")
    state, _ = run(state, Timeout(5000), PromptFinished(), PromptFinished())
    assert state.retries == 1
    state, commands = run(state, Digit("9", 10))
    assert commands[-1] == Play("sound:main")
    assert state.retries == 1
    assert state.phase is Phase.PROMPTING


def test_going_to_a_menu_already_on_the_stack_unwinds_to_it() -> None:
    state = waiting_in("main", "1")
    state, _ = run(state, Digit("5", 10))
    assert state.stack == ("main",)


# -- transfer, record, set variable ------------------------------------------------------------


def test_a_failed_transfer_returns_to_the_menu() -> None:
    state = waiting_in("main")
    state, commands = run(state, Digit("0", 10))
    assert commands[-1] == Transfer(TransferTargetType.AGENT, "1001", "main", "0")
    state, commands = run(state, TransferFailed("busy"))
    assert commands == [Play("sound:busy")]
    state, commands = run(state, PromptFinished())
    assert commands == [Play("sound:main")]
    state, commands = run(state, PromptFinished(), Digit("1", 10))
    assert state.stack == ("main", "sales")


def test_record_a_message_then_hang_up() -> None:
    state = waiting_in("main", "1")
    state, commands = run(state, Digit("3", 10), PromptFinished())
    assert commands[-2:] == [Play("sound:leave-message"), RecordMessage(60, True, None)]
    assert state.phase is Phase.RECORDING
    state, commands = run(state, RecordingDone(12_000))
    assert commands == [Hangup()]


def test_set_variable_renders_its_value_and_moves_on() -> None:
    state = waiting_in("main", "1")
    state = IvrState(**{**_fields(state), "variables": {"caller": "en"}})
    state, commands = run(state, Digit("4", 10))
    assert commands[2:] == [SetVariable("skill", "sales-en"), Play("sound:main")]
    assert state.variables == {"caller": "en", "skill": "sales-en"}
    assert state.stack == ("main",)


def _fields(state: IvrState) -> dict[str, object]:
    return {name: getattr(state, name) for name in IvrState.__dataclass_fields__}


# -- multi-digit input and lookups ---------------------------------------------------------


def _account(state: IvrState, keys: str) -> tuple[IvrState, list[Command]]:
    return run(state, *(Digit(k, 100 * i) for i, k in enumerate(keys, start=1)))


def test_account_number_until_hash_is_looked_up_and_spoken() -> None:
    state, _ = run(IvrState(variables={"caller": "+14155550100"}), Entered("main"))
    state, _ = run(state, PromptFinished(), Digit("2", 10))
    assert state.stack == ("main", "account")
    state, commands = _account(state, "123456")  # barges into "enter account"
    assert commands[0] == StopPrompt()
    assert commands[1:] == [StartInterDigitTimer(2000)] * 6
    assert state.phase is Phase.COLLECTING
    state, commands = run(state, Digit("#", 700))
    assert commands == [
        CancelTimer(),
        RecordDtmf("account", "123456#", DtmfOutcome.COLLECTED, "collected", 700, 1, "123456"),
        SetVariable("acct", "123456"),
        HttpLookup(
            "https://erp.example/balance/123456",
            {"account": "123456", "who": "+14155550100"},
            "GET",
            1500,
        ),
    ]
    assert state.phase is Phase.LOOKING_UP
    state, commands = run(state, LookupResult(True, "4200"))
    assert commands == [SetVariable("balance", "4200"), SayNumber("4200")]
    state, commands = run(state, PromptFinished())
    assert commands == [Play("sound:main")]
    assert state.stack == ("main",)
    assert state.variables["acct"] == "123456"
    assert state.variables["balance"] == "4200"


def test_a_pause_before_the_terminator_is_invalid_input() -> None:
    state = waiting_in("main", "2")
    state, _ = _account(state, "123")
    state, commands = run(state, Timeout())
    assert commands == [
        RecordDtmf("account", "123", DtmfOutcome.INVALID, None, 300, attempt=1),
        Play("sound:bad-account"),
    ]
    state, commands = run(state, PromptFinished())
    assert commands == [Play("sound:enter-account")]
    assert state.buffer == ""


def test_too_many_digits_or_a_bare_terminator_is_invalid() -> None:
    state = waiting_in("main", "2")
    _, commands = _account(state, "1234567")
    assert RecordDtmf("account", "1234567", DtmfOutcome.INVALID, None, 700, attempt=1) in commands
    _, commands = run(state, Digit("#", 5))
    assert commands[:2] == [
        CancelTimer(),
        RecordDtmf("account", "#", DtmfOutcome.INVALID, None, 5, 1),
    ]


def test_a_failed_lookup_plays_its_failure_prompt_and_asks_again() -> None:
    state = waiting_in("main", "2")
    state, _ = _account(state, "42#")
    state, commands = run(state, LookupResult(False, error="timeout"))
    assert commands == [Play("sound:lookup-failed")]
    state, commands = run(state, PromptFinished())
    assert commands == [Play("sound:enter-account")]


def test_lookup_routes_select_the_next_menu_and_say_digits() -> None:
    menus = {
        "m": IvrMenu(
            "m",
            greeting="sound:m",
            options={
                "1": IvrOption(
                    IvrAction.HTTP_LOOKUP,
                    url="https://erp/tier",
                    say=SayMode.DIGITS,
                    routes={"gold": "vip"},
                )
            },
        ),
        "vip": IvrMenu("vip", greeting="sound:vip", options={"1": IvrOption(IvrAction.HANGUP)}),
    }
    state, _ = run(IvrState(), Entered("m"), PromptFinished(), Digit("1"), menus=menus)
    state, commands = run(state, LookupResult(True, "gold"), PromptFinished(), menus=menus)
    assert commands == [SayDigits("gold"), Play("sound:vip")]
    assert state.stack == ("m", "vip")
    # any other value stays in the menu
    state, _ = run(IvrState(), Entered("m"), PromptFinished(), Digit("1"), menus=menus)
    state, commands = run(state, LookupResult(True, "silver"), PromptFinished(), menus=menus)
    assert commands == [SayDigits("silver"), Play("sound:m")]


def test_fixed_length_input_completes_at_its_length() -> None:
    state, _ = run(IvrState(), Entered("pin"), PromptFinished())
    state, commands = _account(state, "9876")
    assert commands[-4:] == [
        CancelTimer(),
        RecordDtmf("pin", "9876", DtmfOutcome.COLLECTED, "collected", 400, 1, "9876"),
        SetVariable("pin", "9876"),
        Play("sound:thanks"),
    ]
    _, commands = run(state, PromptFinished())
    assert commands == [Hangup()]


def test_render_fills_known_variables_and_blanks_unknown_ones() -> None:
    assert render("/a/{x}/{y}/{not a name}", {"x": "1"}) == "/a/1//{not a name}"


# -- the model's own checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "field"),
    [
        (lambda: IvrOption(IvrAction.SUBMENU), "menu"),
        (lambda: IvrOption(IvrAction.TRANSFER, target="x"), "target_type"),
        (lambda: IvrOption(IvrAction.TRANSFER, target_type=TransferTargetType.AGENT), "target"),
        (
            lambda: IvrOption(
                IvrAction.TRANSFER, target_type=TransferTargetType.NUMBER, target="555"
            ),
            "target",
        ),
        (lambda: IvrOption(IvrAction.HTTP_LOOKUP), "url"),
        (lambda: IvrOption(IvrAction.SET_VARIABLE, name="1x"), "name"),
        (lambda: IvrMenu("m", timeout_ms=5), "timeout_ms"),
        (lambda: IvrMenu("m", options={"12": IvrOption(IvrAction.HANGUP)}), "options.12"),
        (lambda: IvrMenu("m", input_mode=InputMode.FIXED_LENGTH), "input_length"),
        (
            lambda: IvrMenu("m", input_mode=InputMode.UNTIL_TERMINATOR, variable="v"),
            "terminator",
        ),
        (
            lambda: IvrMenu("m", input_mode=InputMode.FIXED_LENGTH, input_length=2, variable="v"),
            "options.collected",
        ),
        (
            lambda: IvrMenu("m", options={"collected": IvrOption(IvrAction.HANGUP)}),
            "options.collected",
        ),
        # a single-digit menu stores its variable too: it must be a name (found by fuzzing)
        (
            lambda: IvrMenu("m", options={"1": IvrOption(IvrAction.HANGUP)}, variable="\x8a<"),
            "variable",
        ),
    ],
)
def test_model_refuses_incomplete_definitions(make: object, field: str) -> None:
    assert callable(make)
    with pytest.raises(InvalidInput) as info:
        make()
    assert info.value.field == field


def test_check_menus_finds_unknown_targets_and_traps() -> None:
    menus = {
        "a": IvrMenu(
            "a",
            options={
                "1": IvrOption(IvrAction.SUBMENU, menu="b"),
                "2": IvrOption(IvrAction.SUBMENU, menu="zz"),
            },
            fallback=IvrOption(IvrAction.REPEAT),
        ),
        "b": IvrMenu(
            "b",
            options={"1": IvrOption(IvrAction.SUBMENU, menu="a")},
            fallback=IvrOption(IvrAction.REPEAT),
        ),
    }
    problems = check_menus(menus)
    assert problems[0] == MenuProblem(("a", "options", "2", "menu"), "unknown menu 'zz'")
    assert problems[1].path == ("a",)
    assert "a, b" in problems[1].message


def test_back_to_a_menu_with_an_exit_is_not_a_trap() -> None:
    menus = {
        "a": IvrMenu(
            "a", options={"1": IvrOption(IvrAction.SUBMENU, menu="b")}
        ),  # default fallback
        "b": IvrMenu(
            "b", options={"*": IvrOption(IvrAction.BACK)}, fallback=IvrOption(IvrAction.BACK)
        ),
    }
    assert check_menus(menus) == []
    assert check_menus(MENUS) == []


# -- never silent ----------------------------------------------------------------------------------

_WAIT_STARTED_BY: dict[Phase, tuple[type, ...]] = {
    Phase.PROMPTING: (Play, SayDigits, SayNumber),
    Phase.ANNOUNCING: (Play, SayDigits, SayNumber),
    Phase.WAITING: (StartInputTimer,),
    Phase.COLLECTING: (StartInterDigitTimer,),
    Phase.TRANSFERRING: (Transfer,),
    Phase.RECORDING: (RecordMessage,),
    Phase.LOOKING_UP: (HttpLookup,),
    Phase.ENDED: (Hangup,),
}


@pytest.mark.parametrize("seed", range(50))
def test_every_wait_starts_with_a_prompt_a_timer_or_an_operation(seed: int) -> None:
    rng = random.Random(seed)
    events: list[Event] = [
        PromptFinished(),
        Timeout(),
        LookupResult(True, "0"),
        LookupResult(False),
        TransferFailed("busy"),
        RecordingDone(),
        *(Digit(key, 10) for key in "0123456789*#"),
    ]
    state, _ = run(IvrState(), Entered(rng.choice(sorted(MENUS))))
    for _ in range(60):
        if state.phase is Phase.ENDED:
            break
        result = step(MENUS, state, rng.choice(events))
        if result.state != state:
            assert result.commands, (state, result)
            assert isinstance(result.commands[-1], _WAIT_STARTED_BY[result.state.phase])
        state = result.state
