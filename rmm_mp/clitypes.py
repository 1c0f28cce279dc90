"""Click parameter types and checks the subcommands share.

Owns only option parsing (numbers in ASCII digits only, with no '_' in them, and an integer of
more digits than Python converts refused as such: Int, IntRange; a NaN-refusing FloatRange, and
one that keeps an integer exact, shown as N|SECONDS; a time option's word with a unit, `5s`,
refused naming the number to write if the option takes it: not_seconds, unit_hint; the refusal
of options beside a listing flag; a refused name shown abbreviated: Choice, CatalogChoice, Group;
any word of the command line shown abbreviated and escaped in click's own refusals: Command; a
bad input file's error, usage_error) and how --help shows an option's default (Option);
nothing here touches a machine.
"""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

import click

from rmm_mp.hw.tomlnum import TypedFloat, grouped_number, number_range
from rmm_mp.hw.tomlsrc import ConfigError, shown_text, toml_string
from rmm_mp.printable import SHOWN_MAX, abbreviated, basic_string, not_one_printable_line
from rmm_mp.timeunits import seconds_written


def refuse_non_ascii(value: Any, kind: str, param: click.Parameter | None, ctx: click.Context | None) -> None:
    """Refuse a number typed with a character outside ASCII, naming the first one: Python's
    int() and float() read any Unicode decimal digit (full-width '４', Arabic-Indic '٣',
    Devanagari '७') and Unicode whitespace around it, so click's INT, IntRange and FLOAT took
    `--cpus ４` for 4 without a word. A number on the command line is written in ASCII digits."""
    if not isinstance(value, str) or value.isascii():
        return
    ch = next(c for c in value if not c.isascii())
    name = unicodedata.name(ch, "")
    raise click.BadParameter(f"{value!r}: expected {kind} in ASCII (digits 0-9), but {ch!r} (U+{ord(ch):04X}"
                             f"{' ' + name if name else ''}) is not ASCII", ctx=ctx, param=param)


def refuse_odd_number(value: Any, kind: str, param: click.Parameter | None, ctx: click.Context | None,
                      accepts: Callable[[int], bool] | None = None, range_text: str = "the range") -> None:
    """refuse_non_ascii, and refuse a number with an underscore in it: Python's int() and
    float() skip one between two digits (`--cpus 1_0` ran on 10 CPUs, `--seconds 1_0.5` for
    10.5 s), as no other command-line tool does, and as the numbers a workload or platform file
    writes in a string ("4M", "0-3", "64 MiB") do not either. StepsOrSeconds read `1_0` as 10
    seconds' worth of float while it read `10` as an exact count of steps. A sign (`+4`, `-1`)
    and blanks around the number are read as before. For an integer, the number to write is
    the integer, if the option takes it (option_integer_hint, given ``accepts`` and ``range_text``):
    `--cpus 1_0.0` named 10.0, which an integer option refuses in turn."""
    refuse_non_ascii(value, kind, param, ctx)
    if isinstance(value, str) and "_" in value:
        bare = value.strip().replace("_", "")
        if accepts is not None:     # an integer option (Int, IntRange): its range bounds the hint
            hint = option_integer_hint(bare, accepts, range_text)
        else:
            try:
                float(bare)
                hint = f" (write {bare})" if bare else ""
            except ValueError:
                hint = ""
        raise click.BadParameter(f"{value!r}: expected {kind} in digits without '_'{hint}", ctx=ctx, param=param)


def refuse_long_integer(value: Any, param: click.Parameter | None, ctx: click.Context | None) -> None:
    """Refuse an integer of more digits than Python's int() converts (sys.get_int_max_str_digits(),
    4300), as a TOML file's is refused (tomlparse.loads): click said "'999...' is not a valid
    integer", which it is, after the whole of it (5,000 digits) where `--seed` with 100 digits
    is refused as out of range. Shown abbreviated, as a file's long value is."""
    most = sys.get_int_max_str_digits()
    m = _DECIMAL_INTEGER.fullmatch(value) if isinstance(value, str) else None
    if m is not None and most and len(m.group(1).lstrip("0")) > most:
        raise click.BadParameter(f"{typed(value)}: expected an integer of at most {most} digits (every option's "
                                 "range ends far below)", ctx=ctx, param=param)


_DECIMAL_INTEGER = re.compile(r"\s*[+-]?([0-9]+)\s*", re.ASCII)


def option_integer_hint(text: str, accepts: Callable[[int], bool] | None = None, range_text: str = "the range") -> str:
    """" (write N)" for ``text`` (no '_' in it) that is a number of integer value, N that
    integer in digits, when the option takes N (``accepts``, its range; None: the command checks
    the range after the parsing); " (it is N, outside RANGE)" when it does not, as a time's
    unit_hint says it, so that no number is named to write that is refused in turn (`--steps
    -1e3` named -1000). Empty for any other text: no integer (`1.5`, `1e-5`, `nan`), or past
    2^64 (every option's range ends far below it)."""
    if m := _DECIMAL_INTEGER.fullmatch(text):
        if len(m.group(1).lstrip("0")) > 20:
            return ""       # past 2^64, and int() refuses past 4,300 digits (a traceback)
        number: float | int = int(text)
    else:
        try:
            number = float(text)
        except ValueError:
            return ""
        if not math.isfinite(number) or not number.is_integer():
            return ""
    if abs(number) >= 2 ** 64:
        return ""
    n = int(number)
    return f" (write {n})" if accepts is None or accepts(n) else f" (it is {n}, outside {range_text})"


def refuse_float_for_integer(value: Any, param: click.Parameter | None, ctx: click.Context | None,
                             accepts: Callable[[int], bool] | None = None, range_text: str = "the range") -> None:
    """Refuse a number written as a float where an integer is taken (`--iterations 1e5`,
    `--cpus 2.0`), naming the integer to write when it is one the option takes (option_integer_hint):
    click said "'1e5' is not a valid integer", where every other number error of the commands
    says what to write."""
    if not isinstance(value, str) or _DECIMAL_INTEGER.fullmatch(value):
        return
    try:
        number = float(value)
    except ValueError:
        return
    if math.isnan(number) or (math.isinf(number) and "inf" in value.lower()):
        return      # a word, no number: click's "is not a valid integer" names it
    hint = option_integer_hint(value.strip(), accepts, range_text)
    raise click.BadParameter(f"{typed(value)!r}: expected an integer in digits{hint}", ctx=ctx, param=param)


def typed(value: str) -> str:
    """``value`` as typed, without the blanks around it, for an error: abbreviated past 240
    characters as a file's value is (printable.abbreviated), so that 5,000 digits pasted by
    mistake do not bury the message."""
    return abbreviated(value.strip())


def unit_hint(value: str, accepts: Callable[[float], bool], whose: str = "",
              why_not: Callable[[float], str | None] | None = None) -> str:
    """For a time option's word that is a number with a unit (`5s`, `500ms`, `2min`), as users
    of other tools type it: " (without a unit: write N)", N the seconds it stands for, or, when
    the option refuses N (``accepts`` False), " (without a unit it is N, outside the range)":
    "write 7200" above "expected 0.1..3,600" named a number to write that is refused in turn.
    Empty for any other word, and for a unit whose capitals mean something else (5M, 5MS).
    ``whose`` goes first in the parentheses, for an option that takes seconds in one kind of
    run alone. ``why_not`` says why the command refuses N within the range, if it does (a
    workload whose phases N leaves too short), in place of "write N"."""
    written = seconds_written(value)
    if written is None:
        return ""
    seconds, number = written
    if not accepts(seconds):
        return f" ({whose}without a unit it is {number}, outside the range)"
    why = why_not(seconds) if why_not is not None else None
    if why:
        return f" ({whose}without a unit it is {number}, {why})"
    return f" ({whose}without a unit: write {number})"


def not_seconds(value: str, accepts: Callable[[float], bool],
                why_not: Callable[[float], str | None] | None = None) -> str:
    """The refusal of a time option's word that is no number, '... is not a number of seconds',
    with its unit_hint: click said "'5s' is not a valid float." and left the unit to guess."""
    return f"{value!r} is not a number of seconds{unit_hint(value, accepts, why_not=why_not)}"


def _in_range(number_range_type: click.FloatRange | click.IntRange) -> Callable[[float], bool]:
    """Whether a number is in the range of ``number_range_type``."""
    r = number_range_type

    def accepts(x: float) -> bool:
        above = r.min is None or (x > r.min if r.min_open else x >= r.min)
        below = r.max is None or (x < r.max if r.max_open else x <= r.max)
        return above and below
    return accepts


class Int(click.ParamType):
    """click's INT for ASCII digits only, without '_' (refuse_odd_number). Its range is the
    command's to check (it names the platform's CPUs, say), but ``least`` and ``most`` bound the
    integer a hint names for `1_0` or `1e3` (option_integer_hint): `--cpus -1e3` was told "write -1000",
    and `--cpus 1e3` "write 1000", each refused in turn."""

    name = "integer"

    def __init__(self, least: int = 0, most: int | None = None) -> None:
        self.least, self.most = least, most
        self._range = number_range(least, most)

    def _accepts(self, n: int) -> bool:
        return n >= self.least and (self.most is None or n <= self.most)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_odd_number(value, "an integer", param, ctx, self._accepts, self._range)
        refuse_long_integer(value, param, ctx)
        refuse_float_for_integer(value, param, ctx, self._accepts, self._range)
        return click.INT.convert(value, param, ctx)


class IntRange(click.IntRange):
    """click.IntRange for ASCII digits only, without '_' (refuse_odd_number), whose range, in
    --help and in its error, is worded as every other integer range (tomlnum.number_range:
    `0..18,446,744,073,709,551,615`, where click wrote `0<=x<=18446744073709551615`; an open or
    endless one in click's notation, digits grouped)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_odd_number(value, "an integer", param, ctx, self._accepts, self._describe_range())
        refuse_long_integer(value, param, ctx)
        refuse_float_for_integer(value, param, ctx, self._accepts, self._describe_range())
        return super().convert(value, param, ctx)

    def _accepts(self, n: int) -> bool:
        # The range check of click's own IntRange (_number_clamp aside: no option clamps).
        return _in_range(self)(n)

    def _describe_range(self) -> str:
        # click's hook for the range text of both its error and --help (click 8.0 to 8.x).
        return number_range(self.min, self.max, self.min_open, self.max_open)


class FloatRange(click.FloatRange):
    """click.FloatRange that also refuses NaN (no comparison with NaN is true, so click's range
    check lets it through, and a NaN deadline or timeout is never reached), and whose errors
    show the value as typed: click's showed the float it made of it, so `--seconds 0` was
    refused as "0.0 is not in the range", `1e999` as "inf" and `1e-400` as "0.0", values nobody
    typed, and a value that is no number as "not a valid float range", without the range. ASCII
    only, without '_' (refuse_odd_number)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_odd_number(value, "a number", param, ctx)
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                self.fail(f"{not_seconds(value, _in_range(self))}; expected {_range_text(self)}", param, ctx)
        try:
            number = super().convert(value, param, ctx)
        except click.BadParameter:
            if not isinstance(value, str):
                raise
            self.fail(f"{typed(value)} is not in the range {_range_text(self)}.", param, ctx)
        if isinstance(number, float) and math.isnan(number):
            self.fail(f"{value!r} is not a number of seconds; expected {_range_text(self)}", param, ctx)
        return number

    def _describe_range(self) -> str:
        # click's hook for the range text of --help ("[default: 20; 0.1..3,600]"), worded as
        # this type's errors word it (_range_text).
        return _range_text(self)


class TypedFloatParam(click.ParamType):
    """click's FLOAT, giving a TypedFloat: for the options whose range the workload's resolution
    checks (`run` and `workloads show` --seconds), so that its error shows the value as typed.
    ASCII only, without '_' (refuse_odd_number). ``lo`` and ``hi``, that range, are named when
    a word is no number (not_seconds), so that a unit's hint names no number refused later;
    ``why_not``, given the context (typed_word reads its command line) and such a number,
    says why the command refuses it within the range (a workload's phases), or None."""

    name = "float"

    def __init__(self, lo: float, hi: float,
                 why_not: Callable[[click.Context | None, float], str | None] | None = None) -> None:
        self.lo = lo
        self.hi = hi
        self.why_not = why_not

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_odd_number(value, "a number", param, ctx)
        if not isinstance(value, str):
            return value
        try:
            return TypedFloat(float(value), typed(value))
        except ValueError:
            expected = number_range(self.lo, self.hi, False, False)
            refuses = self.why_not
            why_not = (lambda x: refuses(ctx, x)) if refuses is not None else None
            self.fail(f"{not_seconds(value, lambda x: self.lo <= x <= self.hi, why_not)}; expected {expected}", param,
                      ctx)


def _range_text(number_range_type: click.FloatRange) -> str:
    """The range as --help and the errors write it, as an integer range is ('0.1..3,600',
    '0<x<=86,400', 'x>=0': tomlnum.number_range), made here rather than with click's private
    helper for it."""
    r = number_range_type
    return number_range(r.min, r.max, r.min_open, r.max_open)


class StepsOrSeconds(click.FloatRange):
    """click.FloatRange that keeps a value typed as a decimal integer an exact int: a count of
    steps up to 2^64 - 1 read as a float lost its low bits (2^53 + 1 became 2^53), and 2^64 - 1
    itself became 2^64, past the bound. A value with a point or an exponent is a float, as
    before; so is an integer of more than 30 digits (past every bound, and past what the
    error can show as typed).

    The number is steps in one kind of run and seconds in the other, so --help shows it as
    N|SECONDS (click's FLOAT RANGE said neither), and an error shows the value as typed (click's
    showed -1 as -1.0, a value nobody typed)."""

    name = "steps or seconds"
    _INTEGER = re.compile(r"\s*\+?[0-9]{1,30}\s*", re.ASCII)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        # ctx is optional: click 8.1 (pyproject allows it) calls get_metavar(param) alone, and
        # with ctx required `rmm-mp stress --help` ended in a TypeError.
        return "N|SECONDS"

    def _describe_range(self) -> str:
        return _range_text(self)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        refuse_odd_number(value, "a number", param, ctx)
        if isinstance(value, str):
            try:
                float(value)
            except ValueError:
                # A time with a unit (`5s`) is seconds, which only a free-running run takes here:
                # in a deterministic one, 5 is 5 steps.
                hint = unit_hint(value, _in_range(self), "as a free-running run's seconds, ")
                self.fail(f"{value!r} is not a number{hint}: expected N steps or SECONDS, {_range_text(self)}", param,
                          ctx)
        try:
            number = super().convert(value, param, ctx)       # the range check, on the float
        except click.BadParameter:
            if not isinstance(value, str):
                raise
            self.fail(f"{typed(value)} is not in the range {_range_text(self)}.", param, ctx)
        if isinstance(value, str) and self._INTEGER.fullmatch(value):
            return int(value)
        if isinstance(value, str) and number == 0 and re.search(r"[1-9]", value.lower().partition("e")[0]):
            # 1e-400 reads as 0.0, which means "no checks": a value typed as more than 0 must not
            # turn the checks off without a word.
            self.fail(f"{typed(value)} reads as 0, which turns the checks off; expected 0 for no checks or a "
                      f"number a float holds as more than 0", param, ctx)
        if isinstance(value, str) and isinstance(number, float):
            # Kept as typed for the checks after the parsing (the run's configuration): they
            # showed `1e999` as "inf" and `1e20` as "1e+20".
            return TypedFloat(number, typed(value))
        return number




class Option(click.Option):
    """click.Option whose --help shows a numeric default with its digits grouped as the range
    beside it is ("[default: 20,000; 1..100,000,000]", where click wrote 20000) and a float
    default as the number it is ("[default: 20; 0.1..3,600]", not 20.0): every option with
    show_default=True is declared with cls=Option. click before 8.2 has no get_help_extra and
    shows the default as click does."""

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        if "default" in extra and self.show_default is True:
            value = self.get_default(ctx, call=False)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                extra["default"] = grouped_number(value)
        return extra


class CatalogChoice(click.Choice):
    """click.Choice of a catalog's names (the bug catalog's, for --inject): --help shows the
    metavar (BUG) rather than every name on one line (15 names made a 600-column line), and a
    name not in the catalog is refused with the one closest to it, if any, and where the
    catalog is listed, rather than with every name."""

    def __init__(self, choices: list[str], metavar: str, what: str, listing: str) -> None:
        super().__init__(choices)
        self.metavar = metavar
        self.what = what
        self.listing = listing

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return self.metavar

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        import difflib      # here: only a refused name needs it
        # Compared case-folded: names are matched exactly, as click.Choice matched them, but a
        # name typed in capitals (LOCK-TWO-UNORDERED) is offered its own name; compared as
        # typed it was close to none, and the error no longer lists the names to see it in.
        names = {str(c).casefold(): str(c) for c in self.choices}
        close = [names[m] for m in difflib.get_close_matches(str(value).casefold(), list(names), n=1)]
        hint = f"did you mean {close[0]!r}? " if close else ""
        self.fail(f"{shown_text(str(value))} is no {self.what}; {hint}`{self.listing}` lists them", param, ctx)


class Choice(click.Choice):
    """click.Choice whose refusal shows the value as every other refused value is shown
    (tomlsrc.shown_text: abbreviated past 240 characters, escaped if not printable): click's
    showed the whole of it, 5,000 characters pasted by mistake and then the choices."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            if not isinstance(value, str):
                raise
            names = ", ".join(repr(str(c)) for c in self.choices)
            self.fail(f"{shown_text(value)} is not one of {names}.", param, ctx)


def _typed_words(args: list[str]) -> list[str]:
    """The words of ``args`` a click message may name, longest first (so that a word is shown
    before a shorter one inside it): each argument, and for an option with its value in the
    same argument (`--name=value`, `-cVALUE`) the option and the value apart."""
    words = set(args)
    for arg in args:
        if arg.startswith("--") and "=" in arg:
            words.update(arg.split("=", 1))
        elif arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            words.update((arg[:2], arg[2:]))
    return sorted(words, key=len, reverse=True)


def _escaped_controls(text: str) -> str:
    """``text`` with every character that is not printable but a newline written as its escape
    (\\u001B): the last guard for a character of the command line that a message names in a
    form _shown_words does not know (click 8.1's NoSuchOption names `-h<ESC>`'s second option as
    -<ESC>, a word that was never typed)."""
    if text.replace("\n", "").isprintable():
        return text
    return "".join(c if c == "\n" or c.isprintable() or unicodedata.category(c) == "Zs"
                   else basic_string(c)[1:-1] for c in text)


def _shown_words(message: str, args: list[str]) -> str:
    """``message`` (one of click's, or ours, refusing the command line ``args``) with each word
    of it that is too long to show whole or not one printable line shown as every other refused
    value is (tomlsrc.shown_text: abbreviated past 240 characters, escaped), in the two forms
    click names a word in: repr ("No such option '--x'", "'x' is not a valid integer", "File 'x'
    does not exist", with a path's undecodable bytes as U+FFFD) or as typed ("No such option:
    --x" before click 8.2, "Got unexpected extra argument (x)", whose ESC reached the terminal).
    A message that names the word already shown is left as it is."""
    for word in _typed_words(args):
        if not_one_printable_line(word) is None and len(toml_string(word)) <= SHOWN_MAX:
            continue
        shown = shown_text(word)
        for form in (repr(word), repr(click.utils.format_filename(word)), word):
            message = message.replace(form, shown)
    return _escaped_controls(message)


_TYPED_ARGS = "rmm_mp.typed_args"
"""ctx.meta's key for the words of the command line that Command.parse_args was given."""


def typed_word(ctx: click.Context | None, name: str) -> str | None:
    """The word typed for parameter ``name`` (a positional argument, say) on ``ctx``'s command
    line, before any parameter is converted, or None: for an option type's message that needs
    an argument click converts only after the options (it parses positional arguments last).
    Making the argument eager instead had "Missing argument" hide an option's own refusal."""
    args = ctx.meta.get(_TYPED_ARGS) if ctx is not None else None
    if ctx is None or args is None:
        return None
    try:
        opts, _, _ = ctx.command.make_parser(ctx).parse_args(args=list(args))
    except click.UsageError:
        return None     # the real parse refuses the same words in its turn
    word = opts.get(name)
    return word if isinstance(word, str) else None


class Command(click.Command):
    """click.Command whose refusal of its command line shows a word of it as every other refused
    value is shown (_shown_words: abbreviated past 240 characters, escaped if not printable),
    whichever of click's messages refuses it: an unknown option, an extra argument, a value an
    option type refuses (click.Path's "File '...' does not exist", click.INT's "'...' is not a
    valid integer"). click printed the word whole, 5,000 characters pasted by mistake, and an
    extra argument raw, so that an ESC in it acted on the terminal.

    Every rmm-mp command is one of these (a Group is one too, and makes its subcommands ones):
    its own parse_args is where all of its parameters are parsed and converted, so it is the one
    place that sees both the words and every refusal of them."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        typed_args = list(args)     # click's parser consumes the list it is given
        ctx.meta[_TYPED_ARGS] = tuple(typed_args)
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:     # BadParameter and NoSuchOption too
            if exc.message:
                # click types message Final, but it is a plain attribute its format_message
                # reads; editing it keeps BadParameter's param hint and the exception's class.
                exc.message = _shown_words(exc.message, typed_args)  # type: ignore[misc]
            raise


class Group(Command, click.Group):
    """click.Group whose refusal of an unknown command shows the word as every other refused
    name is (tomlsrc.shown_text: abbreviated past 240 characters, escaped if not printable;
    click's "No such command" showed the whole of a 5,000-character word) and offers the
    closest of every command it lists (list_commands), "Did you mean 'explore'?", rather than
    click's choice among the commands it has loaded (rmm-mp's own imports its subcommands on
    demand, cli._Commands). Its own options are refused as a Command's are, and the commands
    and groups declared with its decorators are a Command and a group of its own class."""

    command_class = Command
    group_class: "type[click.Group] | type[type] | None" = type     # click's own type for it

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and not ctx.resilient_parsing and ctx.token_normalize_func is None:
            name = str(args[0])
            if name[:1] and not name[:1].isalnum() and self.get_command(ctx, name) is None:
                # A word that looks like an option of another prefix (`rmm-mp +x`: the group's
                # parser knows '-' only, so it came here as a command name): click 8.1 parsed the
                # group's arguments after it again, none, and so printed the help with exit
                # status 0; click 8.2 and later refuse it as no such command, as here.
                raise self._no_such_command(ctx, name)
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            # Matched by its text: click before 8.4 has no NoSuchCommand (ctx.fail made it).
            if not args or not exc.format_message().startswith("No such command"):
                raise
            raise self._no_such_command(ctx, str(args[0])) from None

    def _no_such_command(self, ctx: click.Context, name: str) -> click.UsageError:
        import difflib      # here: cli.py, which imports this module, is every CPU process's main module
        close = difflib.get_close_matches(name, self.list_commands(ctx), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return click.UsageError(f"No such command {shown_text(name)}.{hint}", ctx)


def refuse_beside_listing(ctx: click.Context, flag: str) -> None:
    """Refuse anything typed on the command line beside ``flag`` (a flag that lists a catalog
    and exits, such as ``--list-bugs``): run with the listing, ``--cpus 4`` or a WORKLOAD would
    be silently ignored, and the user might think it took effect."""
    given = [param for param in ctx.command.params
             if param.name is not None and param.opts[0] != flag
             and ctx.get_parameter_source(param.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        # An argument as the usage line writes it (metavar "[PAIR]..." -> PAIR), not its
        # Python name (pairs).
        shown = ", ".join(param.opts[0] if isinstance(param, click.Option)
                          else (param.metavar or str(param.name).upper()).strip("[].")
                          for param in given)
        raise click.UsageError(f"{flag} lists the catalog and exits: it takes no other option or argument "
                               f"(given: {shown})")


class BadInputFile(click.ClickException):
    """A workload or platform file (or one it names), or a stress --replay schedule file, that is
    not acceptable: "Error: FILE:LINE: key = value: expected ...", exit status 2 as for a usage
    error, without click's usage block ("Usage: ... Try '... --help'"), which tells of a wrong
    invocation: the command line was right, the file's content was not."""

    exit_code = 2


def usage_error(exc: ConfigError) -> click.ClickException:
    """The click error for ``exc``: a usage error (usage block first) when the command line
    itself was wrong (an argument or option: source "command line"), else BadInputFile. Both
    exit with status 2 (docs/workloads.md); before, a bad file's content came after the usage
    block too."""
    if exc.source == "command line":
        return click.UsageError(str(exc))
    return BadInputFile(str(exc))
