"""IVR menus as data, and the one interpreter that runs them: events in, commands out.

Why pure: the same menu runs for calls entering ``Stasis(ctc,ivr,MENU)`` over ARI and for
calls through FastAGI. Both adapters only translate telephony facts into :data:`Event`
values and carry out the :data:`Command` values :func:`step` returns, so every branch of
the caller's journey (barge-in, invalid keys, silence, retries, fallbacks, transfers that
fail, lookups) is decided — and unit-tested — here, once.

The model mirrors ``ivr_menu`` / ``ivr_menu_option`` (sql/0002_call_policy.sql): a menu has
a greeting, options keyed by a digit or by one of the special keys ``timeout``, ``invalid``
and ``collected``, a timeout, a retry budget and a fallback action. Prompts are media
strings (``sound:hello-world``, ``digits:42``, or TTS text) played as given.

Contract with the adapters:

* :class:`Play`, :class:`SayDigits` and :class:`SayNumber` are played one at a time; the
  adapter reports :class:`PromptFinished` when one ends. After :class:`StopPrompt` (barge-in)
  the stopped playback must not be reported.
* At most one timer is armed: :class:`StartInputTimer` / :class:`StartInterDigitTimer`
  replace it, :class:`CancelTimer` disarms it; when it fires the adapter sends
  :class:`Timeout`.
* :class:`HttpLookup` carries its own ``timeout_ms``: the adapter must answer with a
  :class:`LookupResult` (``ok=False`` on timeout or error). A :class:`Transfer` is answered
  with :class:`Transferred`, :class:`TransferFailed` or (a routing rule that sends the
  caller to a menu) :class:`TransferredToMenu`, a :class:`RecordMessage` with
  :class:`RecordingDone`. So no wait is ever open-ended: every one is a prompt that ends, a
  timer, or an adapter operation with its own deadline.
* :class:`RecordDtmf` is one ``call_dtmf_interaction`` row to persist.

Events that do not fit the current phase (a stale timer, a late lookup answer) change
nothing and return no commands.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Final, TypeVar

from engine.domain.values import evolve
from engine.errors import InvalidInput

__all__ = [
    "BUILTIN_VARIABLES",
    "BY_CONDITIONS",
    "DEFAULT_FALLBACK",
    "DTMF_KEYS",
    "SPECIAL_KEYS",
    "CancelTimer",
    "Command",
    "Digit",
    "DtmfOutcome",
    "Entered",
    "Event",
    "Hangup",
    "HttpLookup",
    "InputMode",
    "IvrAction",
    "IvrMenu",
    "IvrOption",
    "IvrState",
    "LookupResult",
    "MenuBook",
    "MenuProblem",
    "Phase",
    "Play",
    "Prompt",
    "PromptFinished",
    "RecordDtmf",
    "RecordMessage",
    "RecordingDone",
    "SayDigits",
    "SayMode",
    "SayNumber",
    "SetVariable",
    "StartInputTimer",
    "StartInterDigitTimer",
    "Step",
    "StopPrompt",
    "Timeout",
    "Transfer",
    "TransferFailed",
    "TransferTargetType",
    "Transferred",
    "TransferredToMenu",
    "check_menus",
    "render",
    "step",
]


# -- vocabulary ---------------------------------------------------------------------------


class IvrAction(enum.StrEnum):
    SUBMENU = "submenu"
    BACK = "back"
    REPEAT = "repeat"
    TRANSFER = "transfer"
    RECORD_MESSAGE = "record_message"
    HTTP_LOOKUP = "http_lookup"
    SET_VARIABLE = "set_variable"
    HANGUP = "hangup"


class InputMode(enum.StrEnum):
    SINGLE_DIGIT = "single_digit"
    FIXED_LENGTH = "fixed_length"
    UNTIL_TERMINATOR = "until_terminator"


BY_CONDITIONS: Final = "*"
"""The ``target`` of a ``routing_rule`` transfer that names no rule: the tenant's first rule
(by priority) whose conditions and schedule hold for the call decides (the dialled number,
the caller, the time; :func:`engine.domain.routing_rules.select_rule`)."""


class TransferTargetType(enum.StrEnum):
    AGENT = "agent"
    ENDPOINT = "endpoint"
    NUMBER = "number"
    ROUTING_RULE = "routing_rule"


class SayMode(enum.StrEnum):
    DIGITS = "digits"
    NUMBER = "number"


class DtmfOutcome(enum.StrEnum):
    OPTION = "option"
    INVALID = "invalid"
    TIMEOUT = "timeout"
    COLLECTED = "collected"


DTMF_KEYS = frozenset("0123456789*#")
"""Keys a menu option may be bound to."""

SPECIAL_KEYS = frozenset({"timeout", "invalid", "collected"})
"""Option keys that are not digits: retry overrides and the collect-mode continuation."""

BUILTIN_VARIABLES = frozenset({"caller"})
"""Variables every call has from its start: ``caller``, the caller ID number as received
(empty when there is none)."""

_PRESSABLE = frozenset("0123456789*#ABCD")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SAYABLE = re.compile(r"-?[0-9]{1,9}")  # say: number (Asterisk says up to 999,999,999)
_T = TypeVar("_T")


def render(
    template: str, variables: Mapping[str, str], quote: Callable[[str], str] | None = None
) -> str:
    """``{name}`` -> the variable's value (empty when unset, passed through ``quote`` when
    given); other text is kept."""
    escape = quote or (lambda value: value)
    return _PLACEHOLDER.sub(lambda m: escape(variables.get(m.group(1), "")), template)


def _url_quote(value: str) -> str:
    # a caller's keys in a URL: "#", "*", "/" or "?" must not change the URL's structure
    return urllib.parse.quote(value, safe="")


# -- the model ----------------------------------------------------------------------------


def _need(condition: bool, field: str, message: str) -> None:
    if not condition:
        raise InvalidInput(field, message)


@dataclasses.dataclass(frozen=True, slots=True)
class IvrOption:
    """What one key (or the fallback) does. Only the fields of its action are used.

    ``prompt`` plays (uninterruptibly) before the action. ``next`` is the menu to go to
    after ``set_variable``, ``record_message`` or a successful ``http_lookup`` (default:
    the current menu again, or hang up after a recording). ``failure_prompt`` plays when a
    transfer or lookup fails, before the menu is presented again.
    """

    action: IvrAction
    prompt: str | None = None
    menu: str | None = None
    next: str | None = None
    target_type: TransferTargetType | None = None
    target: str | None = None
    failure_prompt: str | None = None
    # record_message
    max_duration_s: int = 120
    beep: bool = True
    silence_s: int | None = None
    # http_lookup: url/params may use {variable}; routes map a result value to a menu
    url: str | None = None
    method: str = "GET"
    params: Mapping[str, str] = dataclasses.field(default_factory=dict)
    timeout_ms: int = 3000
    result_variable: str | None = None
    say: SayMode | None = None
    routes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # set_variable (value may use {variable})
    name: str | None = None
    value: str = ""

    def __post_init__(self) -> None:
        match self.action:
            case IvrAction.SUBMENU:
                _need(bool(self.menu), "menu", "required for submenu")
            case IvrAction.TRANSFER:
                _need(self.target_type is not None, "target_type", "required for transfer")
                if self.target_type is TransferTargetType.NUMBER:
                    _need(
                        _E164.fullmatch(self.target or "") is not None,
                        "target",
                        "must be an E.164 number like +14155550100",
                    )
                else:
                    _need(bool((self.target or "").strip()), "target", "required for transfer")
            case IvrAction.HTTP_LOOKUP:
                _need(bool(self.url), "url", "required for http_lookup")
                _need(self.timeout_ms > 0, "timeout_ms", "must be greater than 0")
            case IvrAction.SET_VARIABLE:
                _need(
                    _VARIABLE.fullmatch(self.name or "") is not None,
                    "name",
                    "must be a variable name (letters, digits, '_')",
                )
            case IvrAction.RECORD_MESSAGE:
                _need(self.max_duration_s > 0, "max_duration_s", "must be greater than 0")
                _need(
                    self.silence_s is None or self.silence_s > 0,
                    "silence_s",
                    "must be greater than 0",
                )
        if self.result_variable is not None:
            _need(
                _VARIABLE.fullmatch(self.result_variable) is not None,
                "result_variable",
                "must be a variable name (letters, digits, '_')",
            )


DEFAULT_FALLBACK = IvrOption(IvrAction.HANGUP, prompt="sound:vm-goodbye")
"""What runs when a menu's retries are exhausted and it names no fallback."""


@dataclasses.dataclass(frozen=True, slots=True)
class IvrMenu:
    """One menu. ``options`` keys are digits or :data:`SPECIAL_KEYS`.

    ``max_retries`` is how many times the menu is presented again after an invalid key or
    silence before ``fallback`` runs. In the collect modes the keys are data: the input is
    stored in ``variable`` and the ``collected`` option runs.
    """

    name: str
    greeting: str | None = None
    options: Mapping[str, IvrOption] = dataclasses.field(default_factory=dict)
    timeout_ms: int = 5000
    inter_digit_timeout_ms: int = 3000
    max_retries: int = 3
    invalid_prompt: str | None = None
    timeout_prompt: str | None = None
    input_mode: InputMode = InputMode.SINGLE_DIGIT
    input_length: int | None = None
    terminator: str | None = None
    variable: str | None = None
    fallback: IvrOption | None = None
    description: str = ""

    def __post_init__(self) -> None:
        _need(100 <= self.timeout_ms <= 600_000, "timeout_ms", "must be between 100 and 600000")
        _need(
            100 <= self.inter_digit_timeout_ms <= 60_000,
            "inter_digit_timeout_ms",
            "must be between 100 and 60000",
        )
        _need(0 <= self.max_retries <= 20, "max_retries", "must be between 0 and 20")
        for key in self.options:
            _need(
                key in DTMF_KEYS or key in SPECIAL_KEYS,
                f"options.{key}",
                "must be one of 0-9, *, # or timeout, invalid, collected",
            )
        if self.input_length is not None:
            _need(1 <= self.input_length <= 64, "input_length", "must be between 1 and 64")
        if self.terminator is not None:
            _need(self.terminator in ("#", "*"), "terminator", "must be '#' or '*'")
        if self.variable is not None:  # a name even where no input is collected into it
            _need(
                _VARIABLE.fullmatch(self.variable) is not None,
                "variable",
                "must be a variable name (letters, digits, '_')",
            )
        match self.input_mode:
            case InputMode.SINGLE_DIGIT:
                _need("collected" not in self.options, "options.collected", _ONLY_COLLECT)
            case InputMode.FIXED_LENGTH | InputMode.UNTIL_TERMINATOR:
                if self.input_mode is InputMode.FIXED_LENGTH:
                    _need(self.input_length is not None, "input_length", "required")
                else:
                    _need(self.terminator is not None, "terminator", "required")
                _need(
                    _VARIABLE.fullmatch(self.variable or "") is not None,
                    "variable",
                    "required: a variable name (letters, digits, '_')",
                )
                _need("collected" in self.options, "options.collected", "required")
                for key in self.options:
                    _need(key in SPECIAL_KEYS, f"options.{key}", _NO_DIGITS)

    @property
    def fallback_action(self) -> IvrOption:
        return self.fallback if self.fallback is not None else DEFAULT_FALLBACK


_ONLY_COLLECT = "only for fixed_length or until_terminator input"
_NO_DIGITS = "digit options are not allowed when the menu collects input"


# -- validation across menus --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class MenuProblem:
    """A problem in a set of menus; ``path`` is relative to the menus mapping."""

    path: tuple[str, ...]
    message: str


_EXITS = frozenset(
    {IvrAction.TRANSFER, IvrAction.RECORD_MESSAGE, IvrAction.HTTP_LOOKUP, IvrAction.HANGUP}
)


def _actions(menu: IvrMenu) -> list[tuple[tuple[str, ...], IvrOption]]:
    found = [((menu.name, "options", key), option) for key, option in menu.options.items()]
    return [*found, ((menu.name, "fallback"), menu.fallback_action)]


def _targets(option: IvrOption) -> list[tuple[tuple[str, ...], str]]:
    """(field path, menu name) pairs an option refers to."""
    found: list[tuple[tuple[str, ...], str | None]] = []
    if option.action is IvrAction.SUBMENU:
        found.append((("menu",), option.menu))
    found.append((("next",), option.next))
    found.extend((("routes", value), menu) for value, menu in option.routes.items())
    return [(field, name) for field, name in found if name is not None]


def _set_variables(menus: Mapping[str, IvrMenu]) -> frozenset[str]:
    """Every variable some step can set: the built-in ones, what a menu collects into,
    a lookup's ``result_variable`` and a ``set_variable``'s ``name``."""
    names = set(BUILTIN_VARIABLES)
    for menu in menus.values():
        if menu.input_mode is not InputMode.SINGLE_DIGIT and menu.variable is not None:
            names.add(menu.variable)
        for _, option in _actions(menu):
            names.update(n for n in (option.result_variable, option.name) if n is not None)
    return frozenset(names)


def _templates(option: IvrOption) -> list[tuple[tuple[str, ...], str]]:
    """(field path, text) of an option's fields that may hold ``{variable}``."""
    found: list[tuple[tuple[str, ...], str]] = []
    if option.action is IvrAction.HTTP_LOOKUP and option.url is not None:
        found.append((("url",), option.url))
        found.extend((("params", key), value) for key, value in option.params.items())
    if option.action is IvrAction.SET_VARIABLE:
        found.append((("value",), option.value))
    return found


def _unset_placeholders(
    menus: Mapping[str, IvrMenu], judged: Collection[str] | None
) -> list[MenuProblem]:
    known = _set_variables(menus)
    problems: list[MenuProblem] = []
    for menu in menus.values():
        if judged is not None and menu.name not in judged:
            continue
        for path, option in _actions(menu):
            for field, text in _templates(option):
                for name in dict.fromkeys(_PLACEHOLDER.findall(text)):
                    if name not in known:
                        problems.append(
                            MenuProblem(
                                (*path, *field),
                                f"placeholder {{{name}}} is set by no step: no menu collects "
                                f"into {name!r}, no result_variable or set_variable names it "
                                "(built in: " + ", ".join(sorted(BUILTIN_VARIABLES)) + ")",
                            )
                        )
    return problems


def check_menus(
    menus: Mapping[str, IvrMenu],
    *,
    also_known: Collection[str] = (),
    traps: bool = True,
    placeholders_of: Collection[str] | None = None,
) -> list[MenuProblem]:
    """Problems no single menu can see: unknown target menus, placeholders no step sets,
    and traps.

    A trap is a set of menus from which no option or fallback ever leads to an exit
    (transfer, record_message, http_lookup, hangup): the caller could never leave. ``back``
    may return to any menu that links here. A placeholder (``{name}`` in a lookup's
    ``url`` or ``params`` or a ``set_variable``'s ``value``) must name a variable some
    step sets (:data:`BUILTIN_VARIABLES`, a collecting menu's ``variable``, a
    ``result_variable`` or a ``set_variable`` ``name``), else it is always empty.

    ``also_known``: menus that exist but are not in ``menus`` (a document's menus that
    could not be read): a reference to one is not unknown, and placeholders, which need
    every menu, are not judged. ``traps=False``: whether the caller can leave is not
    judged (the menus given are not the ones that will run). ``placeholders_of``: the
    menus whose placeholders are judged (default: all), against the variables all of them
    set: a tenant saving some menus is not refused for a placeholder in another.
    """
    problems: list[MenuProblem] = []
    edges: dict[str, set[str]] = {name: set() for name in menus}
    parents: dict[str, set[str]] = {name: set() for name in menus}
    for name, menu in menus.items():
        for path, option in _actions(menu):
            for field, target in _targets(option):
                if target not in menus:
                    if target not in also_known:
                        problems.append(MenuProblem((*path, *field), f"unknown menu {target!r}"))
                else:
                    edges[name].add(target)
                    parents[target].add(name)
    if not also_known:
        problems.extend(_unset_placeholders(menus, placeholders_of))
    if not traps or also_known:
        return problems
    escapes = {
        name
        for name, menu in menus.items()
        if any(option.action in _EXITS for _, option in _actions(menu))
    }
    changed = True
    while changed:
        changed = False
        for name, menu in menus.items():
            if name in escapes:
                continue
            backs = any(o.action is IvrAction.BACK for _, o in _actions(menu))
            reach = edges[name] | (parents[name] if backs else set())
            if reach & escapes:
                escapes.add(name)
                changed = True
    trapped = [name for name in menus if name not in escapes]
    if trapped:
        listed = ", ".join(trapped)
        problems.append(
            MenuProblem(
                (trapped[0],),
                f"no exit: from menu(s) {listed} no option or fallback ever leads to "
                "transfer, record_message, http_lookup or hangup",
            )
        )
    return problems


# -- events (in) --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Entered:
    """The call entered the IVR at ``menu`` (the Stasis or AGI argument)."""

    menu: str


@dataclasses.dataclass(frozen=True, slots=True)
class PromptFinished:
    """The playback the last Play/SayDigits/SayNumber started has ended."""


@dataclasses.dataclass(frozen=True, slots=True)
class Digit:
    """A key; ``ms_since_prompt`` from the start of the prompt it interrupted or its end."""

    digit: str
    ms_since_prompt: int | None = None

    def __post_init__(self) -> None:
        if len(self.digit) != 1 or self.digit not in _PRESSABLE:
            raise InvalidInput("digit", f"not a DTMF key: {self.digit!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Timeout:
    """The armed timer fired."""

    ms_since_prompt: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LookupResult:
    ok: bool
    value: str | None = None
    error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Transferred:
    """The transfer target answered: the call leaves the IVR."""


@dataclasses.dataclass(frozen=True, slots=True)
class TransferFailed:
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TransferredToMenu:
    """The transfer's routing rule sends the caller to ``menu`` (as a submenu would); an
    unknown menu is a failed transfer."""

    menu: str


@dataclasses.dataclass(frozen=True, slots=True)
class RecordingDone:
    duration_ms: int | None = None


Event = (
    Entered
    | PromptFinished
    | Digit
    | Timeout
    | LookupResult
    | Transferred
    | TransferFailed
    | TransferredToMenu
    | RecordingDone
)


# -- commands (out) -----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Play:
    media: str


@dataclasses.dataclass(frozen=True, slots=True)
class SayDigits:
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class SayNumber:
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class StopPrompt:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class StartInputTimer:
    ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class StartInterDigitTimer:
    ms: int


@dataclasses.dataclass(frozen=True, slots=True)
class CancelTimer:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class Transfer:
    """``menu``/``key``: the option that asked for it (key None: the menu's fallback)."""

    target_type: TransferTargetType
    target: str | None
    menu: str | None = None
    key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RecordMessage:
    max_duration_s: int
    beep: bool
    silence_s: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class HttpLookup:
    url: str
    params: Mapping[str, str]
    method: str = "GET"
    timeout_ms: int = 3000


@dataclasses.dataclass(frozen=True, slots=True)
class SetVariable:
    name: str
    value: str


@dataclasses.dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclasses.dataclass(frozen=True, slots=True)
class RecordDtmf:
    """One ``call_dtmf_interaction`` row. ``option`` is the option key that ran, if any."""

    menu: str
    digit: str | None
    outcome: DtmfOutcome
    option: str | None
    ms_since_prompt: int | None
    attempt: int = 1
    value: str | None = None


Prompt = Play | SayDigits | SayNumber
Command = (
    Play
    | SayDigits
    | SayNumber
    | StopPrompt
    | StartInputTimer
    | StartInterDigitTimer
    | CancelTimer
    | Transfer
    | RecordMessage
    | HttpLookup
    | SetVariable
    | Hangup
    | RecordDtmf
)


@dataclasses.dataclass(frozen=True, slots=True)
class MenuBook:
    """A tenant's menus as the adapters run them, with the stored ids DTMF rows cite."""

    menus: Mapping[str, IvrMenu]
    menu_ids: Mapping[str, tuple[uuid.UUID, int]]  # name -> (id, version)
    option_ids: Mapping[tuple[str, str], uuid.UUID]  # (menu, key) -> id


# -- the interpreter ----------------------------------------------------------------------


class Phase(enum.StrEnum):
    IDLE = "idle"  # not entered yet
    PROMPTING = "prompting"  # menu prompts playing; a key barges in
    WAITING = "waiting"  # prompts done, input timer armed
    COLLECTING = "collecting"  # multi-digit input started, inter-digit timer armed
    ANNOUNCING = "announcing"  # prompts before an action; keys are ignored
    TRANSFERRING = "transferring"
    RECORDING = "recording"
    LOOKING_UP = "looking_up"
    ENDED = "ended"


@dataclasses.dataclass(frozen=True, slots=True)
class IvrState:
    """Where one call is in the IVR. Start from ``IvrState()`` (optionally with variables)."""

    phase: Phase = Phase.IDLE
    stack: tuple[str, ...] = ()
    retries: int = 0
    queue: tuple[Prompt, ...] = ()  # prompts still to play after the current one
    then: IvrOption | None = None  # ANNOUNCING: the action once the prompts end
    active: IvrOption | None = None  # TRANSFERRING/RECORDING/LOOKING_UP: the option running
    buffer: str = ""
    last_ms: int | None = None
    variables: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def menu(self) -> str | None:
        return self.stack[-1] if self.stack else None


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    state: IvrState
    commands: tuple[Command, ...] = ()


_REPEAT = IvrOption(IvrAction.REPEAT)
_HANGUP = IvrOption(IvrAction.HANGUP)


def _required(value: _T | None, message: str) -> _T:
    """``value``, which the checks made when options, menus and states are built guarantee;
    None is a bug in this module: RuntimeError with ``message``."""
    if value is None:
        raise RuntimeError(message)
    return value


def _replace(state: IvrState, **changes: object) -> IvrState:
    return evolve(state, **changes)


def _goto(stack: tuple[str, ...], name: str) -> tuple[str, ...]:
    """Push ``name``; going to a menu already on the stack unwinds to it instead."""
    if name in stack:
        return stack[: stack.index(name) + 1]
    return (*stack, name)


def _play(prompts: tuple[Prompt, ...], state: IvrState, phase: Phase) -> Step:
    return Step(_replace(state, phase=phase, queue=prompts[1:]), (prompts[0],))


def _present(menus: Mapping[str, IvrMenu], state: IvrState, lead: str | None = None) -> Step:
    """Play ``lead`` and the greeting (interruptible), or arm the input timer at once."""
    menu = menus[state.stack[-1]]
    prompts = tuple(Play(p) for p in (lead, menu.greeting) if p)
    state = _replace(state, then=None, active=None, buffer="", last_ms=None)
    if prompts:
        return _play(prompts, state, Phase.PROMPTING)
    return Step(_replace(state, phase=Phase.WAITING), (StartInputTimer(menu.timeout_ms),))


def _announce(
    menus: Mapping[str, IvrMenu], state: IvrState, prompts: tuple[Prompt, ...], then: IvrOption
) -> Step:
    if prompts:
        return _play(prompts, _replace(state, then=then), Phase.ANNOUNCING)
    return _perform(menus, state, then)


def _choose(menus: Mapping[str, IvrMenu], state: IvrState, option: IvrOption) -> Step:
    prompts = (Play(option.prompt),) if option.prompt else ()
    return _announce(menus, state, prompts, option)


def _enter(menus: Mapping[str, IvrMenu], state: IvrState, name: str) -> Step:
    return _present(menus, _replace(state, stack=_goto(state.stack, name), retries=0))


def _perform(menus: Mapping[str, IvrMenu], state: IvrState, option: IvrOption) -> Step:
    state = _replace(state, then=None, active=None, queue=())
    match option.action:
        case IvrAction.SUBMENU:
            return _enter(menus, state, _required(option.menu, "a submenu option has no menu"))
        case IvrAction.BACK:
            stack = state.stack[:-1] if len(state.stack) > 1 else state.stack
            return _present(menus, _replace(state, stack=stack, retries=0))
        case IvrAction.REPEAT:
            return _present(menus, state)
        case IvrAction.TRANSFER:
            target_type = _required(option.target_type, "a transfer option has no target_type")
            running = _replace(state, phase=Phase.TRANSFERRING, active=option)
            menu = menus[state.stack[-1]]
            key = next((k for k, o in menu.options.items() if o is option), None)
            transfer = Transfer(target_type, option.target, menu.name, key)
            return Step(running, (transfer,))
        case IvrAction.RECORD_MESSAGE:
            running = _replace(state, phase=Phase.RECORDING, active=option)
            command = RecordMessage(option.max_duration_s, option.beep, option.silence_s)
            return Step(running, (command,))
        case IvrAction.HTTP_LOOKUP:
            url = _required(option.url, "an http_lookup option has no url")
            values = state.variables
            params = {key: render(value, values) for key, value in option.params.items()}
            lookup = HttpLookup(
                render(url, values, _url_quote), params, option.method, option.timeout_ms
            )
            return Step(_replace(state, phase=Phase.LOOKING_UP, active=option), (lookup,))
        case IvrAction.SET_VARIABLE:
            name = _required(option.name, "a set_variable option has no name")
            value = render(option.value, state.variables)
            state = _replace(state, variables={**state.variables, name: value})
            after = _after(menus, state, option.next, _REPEAT)
            return Step(after.state, (SetVariable(name, value), *after.commands))
        case IvrAction.HANGUP:
            return Step(_replace(state, phase=Phase.ENDED), (Hangup(),))


def _after(
    menus: Mapping[str, IvrMenu], state: IvrState, next_menu: str | None, default: IvrOption
) -> Step:
    if next_menu is not None:
        return _enter(menus, state, next_menu)
    return _perform(menus, state, default)


def _failure(
    menus: Mapping[str, IvrMenu],
    state: IvrState,
    kind: DtmfOutcome,
    digit: str | None,
    ms: int | None,
) -> Step:
    """An invalid key or silence: retry with a prompt, the override option, or fallback."""
    menu = menus[state.stack[-1]]
    retries = state.retries + 1
    state = _replace(state, retries=retries, buffer="", last_ms=None)
    override = menu.options.get(kind.value)
    exhausted = retries > menu.max_retries
    key = None if exhausted or override is None else kind.value
    record = RecordDtmf(menu.name, digit, kind, key, ms, attempt=retries)
    if exhausted:
        after = _choose(menus, state, menu.fallback_action)
    elif override is not None:
        after = _choose(menus, state, override)
    else:
        lead = menu.invalid_prompt if kind is DtmfOutcome.INVALID else menu.timeout_prompt
        after = _present(menus, state, lead)
    return Step(after.state, (record, *after.commands))


def _collected(
    menus: Mapping[str, IvrMenu], state: IvrState, raw: str, value: str, ms: int | None
) -> Step:
    menu = menus[state.stack[-1]]
    variable = _required(menu.variable, f"menu {menu.name!r} collects input but has no variable")
    state = _replace(state, buffer="", last_ms=None, variables={**state.variables, variable: value})
    record = RecordDtmf(
        menu.name, raw, DtmfOutcome.COLLECTED, "collected", ms, state.retries + 1, value
    )
    after = _choose(menus, state, menu.options["collected"])
    return Step(after.state, (record, SetVariable(variable, value), *after.commands))


def _digit(menus: Mapping[str, IvrMenu], state: IvrState, event: Digit) -> Step:
    menu = menus[state.stack[-1]]
    barge_in = state.phase is Phase.PROMPTING
    stop: tuple[Command, ...] = (StopPrompt(),) if barge_in else (CancelTimer(),)
    if menu.input_mode is InputMode.SINGLE_DIGIT:
        option = menu.options.get(event.digit) if event.digit in DTMF_KEYS else None
        if option is None:
            after = _failure(menus, state, DtmfOutcome.INVALID, event.digit, event.ms_since_prompt)
            return Step(after.state, stop + after.commands)
        record = RecordDtmf(
            menu.name,
            event.digit,
            DtmfOutcome.OPTION,
            event.digit,
            event.ms_since_prompt,
            state.retries + 1,
        )
        after = _choose(menus, state, option)
        return Step(after.state, (*stop, record, *after.commands))
    raw = state.buffer + event.digit
    ms = event.ms_since_prompt
    if menu.input_mode is InputMode.UNTIL_TERMINATOR and event.digit == menu.terminator:
        value = raw[:-1]
        after = (
            _collected(menus, state, raw, value, ms)
            if value
            else _failure(menus, state, DtmfOutcome.INVALID, raw, ms)
        )
        return Step(after.state, stop + after.commands)
    limit = menu.input_length
    if menu.input_mode is InputMode.FIXED_LENGTH and len(raw) == limit:
        after = _collected(menus, state, raw, raw, ms)
        return Step(after.state, stop + after.commands)
    if limit is not None and len(raw) > limit:  # until_terminator: too long
        after = _failure(menus, state, DtmfOutcome.INVALID, raw, ms)
        return Step(after.state, stop + after.commands)
    collecting = _replace(state, phase=Phase.COLLECTING, queue=(), buffer=raw, last_ms=ms)
    prefix = (StopPrompt(),) if barge_in else ()  # a new timer replaces the armed one
    return Step(collecting, (*prefix, StartInterDigitTimer(menu.inter_digit_timeout_ms)))


def _lookup_done(menus: Mapping[str, IvrMenu], state: IvrState, event: LookupResult) -> Step:
    option = _required(state.active, "a lookup result arrived with no lookup running")
    sayable = _SAYABLE.fullmatch(event.value or "") is not None
    unsayable = option.say is SayMode.NUMBER and not sayable and event.value not in option.routes
    if event.ok and unsayable:
        # Asterisk cannot say "12.50" or "n/a" as a number (FastAGI's SAY NUMBER takes an
        # int): unless a route takes the value, that is a failed lookup, not a broken prompt
        event = LookupResult(ok=False, value=event.value, error="not a number")
    if not event.ok or event.value is None:
        lead = (Play(option.failure_prompt),) if option.failure_prompt else ()
        return _announce(menus, state, lead, _REPEAT)
    value = event.value
    commands: tuple[Command, ...] = ()
    if option.result_variable is not None:
        state = _replace(state, variables={**state.variables, option.result_variable: value})
        commands = (SetVariable(option.result_variable, value),)
    said: tuple[Prompt, ...] = ()
    if option.say is SayMode.DIGITS:
        said = (SayDigits(value),)
    elif option.say is SayMode.NUMBER and sayable:
        said = (SayNumber(value),)
    target = option.routes.get(value, option.next)
    then = IvrOption(IvrAction.SUBMENU, menu=target) if target is not None else _REPEAT
    after = _announce(menus, state, said, then)
    return Step(after.state, commands + after.commands)


def step(menus: Mapping[str, IvrMenu], state: IvrState, event: Event) -> Step:
    """The new state and the commands to carry out, in order, when ``event`` happens.

    ``menus`` must have passed :func:`check_menus` (every target menu exists).
    """
    phase = state.phase
    match event:
        case Entered(menu=name) if phase is Phase.IDLE:
            if name not in menus:
                raise InvalidInput("menu", f"unknown menu {name!r}")
            return _enter(menus, state, name)
        case PromptFinished() if phase in (Phase.PROMPTING, Phase.ANNOUNCING):
            if state.queue:
                return _play(state.queue, state, phase)
            if phase is Phase.ANNOUNCING:
                then = _required(state.then, "announcing with no action to perform after")
                return _perform(menus, state, then)
            menu = menus[state.stack[-1]]
            return Step(_replace(state, phase=Phase.WAITING), (StartInputTimer(menu.timeout_ms),))
        case Digit() if phase in (Phase.PROMPTING, Phase.WAITING, Phase.COLLECTING):
            return _digit(menus, state, event)
        case Timeout(ms_since_prompt=ms) if phase is Phase.WAITING:
            return _failure(menus, state, DtmfOutcome.TIMEOUT, None, ms)
        case Timeout() if phase is Phase.COLLECTING:
            # Input is complete only by length or terminator: a pause leaves it incomplete.
            return _failure(menus, state, DtmfOutcome.INVALID, state.buffer, state.last_ms)
        case LookupResult() if phase is Phase.LOOKING_UP:
            return _lookup_done(menus, state, event)
        case Transferred() if phase is Phase.TRANSFERRING:
            return Step(_replace(state, phase=Phase.ENDED, active=None))
        case TransferFailed() if phase is Phase.TRANSFERRING:
            failed = _required(state.active, "transferring with no transfer running").failure_prompt
            return _announce(menus, state, (Play(failed),) if failed else (), _REPEAT)
        case TransferredToMenu(menu=name) if phase is Phase.TRANSFERRING:
            if name not in menus:
                return step(menus, state, TransferFailed(f"unknown menu {name!r}"))
            return _enter(menus, _replace(state, active=None), name)
        case RecordingDone() if phase is Phase.RECORDING:
            recording = _required(state.active, "recording with no record_message running")
            return _after(menus, state, recording.next, _HANGUP)
    return Step(state)
