"""``billing-events replay``: re-send the events of a dead-letter file under their own keys."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson
from rich.console import Console

from ..deadletter import letter_lines, remember_unknown, too_long, unknown_since, unsure_moment
from ..outcomes import past_window_reason, stale_before
from . import _sending
from ._dry_run import dry_run
from ._exit import UsageError
from ._input import Record
from ._providers import PAST_WINDOW_REMEDY, Provider
from ._summary import finish
from ._text import clip


def _dead_letter_records(
    path: Path,
    provider: Provider,
    only: Sequence[str] | None,
    stale: float | None = None,
    earlier_unknown: dict[str, str] | None = None,
) -> Iterator[Record]:
    """Records of a dead-letter file; entries filtered out by --only are skipped, others' are invalid.

    ``stale``: an ``unknown`` letter unknown since before this Unix time is invalid (past the provider's
    window for repeated keys, see ``stale_before``). ``earlier_unknown`` gets the key and that moment of
    each ``unknown`` letter sent again (``OutcomeSink.earlier_unknown``).
    """
    try:
        stream = path.open("rb")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc

    def entries() -> Iterator[Record]:
        with stream:
            for number, raw in letter_lines(stream):
                if isinstance(raw, int):
                    yield Record(number, None, too_long(raw))
                    continue
                if not raw.strip():
                    continue
                try:
                    entry = orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield Record(number, None, f"not valid JSON: {clip(str(exc))}")
                    continue
                if not isinstance(entry, dict) or not isinstance(entry.get("event"), dict):
                    yield Record(number, None, "not a dead letter: expected an object with an 'event' object")
                    continue
                if entry.get("provider") not in (None, provider.name):
                    yield Record(
                        number, None, f"dead letter of {entry.get('provider')!r}, not {provider.name}"
                    )
                    continue
                if only and entry.get("status") not in only:
                    continue
                if isinstance(entry.get("clipped"), str):
                    yield Record(
                        number,
                        None,
                        f"event too large to keep: {clip(entry['clipped'])}; fix it at its source",
                    )
                    continue
                event: dict[str, object] = entry["event"]
                if event.get(provider.key_field) in (None, "") and isinstance(entry.get("key"), str):
                    event[provider.key_field] = entry["key"]
                why = _not_repeatable(event, provider) or _past_window(entry, provider, stale)
                if why is not None:
                    yield Record(number, None, why)
                    continue
                key = event.get(provider.key_field)
                if earlier_unknown is not None and entry.get("status") == "unknown" and isinstance(key, str):
                    remember_unknown(
                        earlier_unknown, key, unsure_moment(entry.get("unsure_since"), entry.get("at"))
                    )
                yield Record(number, event)

    return entries()


def _not_repeatable(event: dict[str, object], provider: Provider) -> str | None:
    """Why sending this event again could bill it twice, if it could: it lacks what the provider dedups on."""
    if event.get(provider.key_field) in (None, ""):
        return (
            f"event.{provider.key_field}: missing, and the letter has no key: the client would give it a new"
            " one, and the provider could not tell it from the first send"
        )
    if provider.stamps_missing_timestamp and event.get("timestamp") is None:
        return (
            "event.timestamp: missing: the client would stamp it anew, and Lago's ClickHouse store"
            " would bill it again"
        )
    return None


def _past_window(entry: dict[str, object], provider: Provider, stale: float | None) -> str | None:
    """Why an ``unknown`` letter is too old to replay: the provider may have stored it and forgotten its key."""
    since = unknown_since(
        entry.get("status"), unsure_moment(entry.get("unsure_since"), entry.get("at")), stale
    )
    if since is None:
        return None
    return past_window_reason(provider.title, since, PAST_WINDOW_REMEDY)


def replay(args: argparse.Namespace, out: Console, err: Console) -> int:
    provider: Provider = args.provider_spec
    _sending.check_batch_size(provider, args)
    path = Path(args.file)
    stale = None if args.resend_past_window else stale_before(provider.name)
    earlier_unknown: dict[str, str] = {}
    records = _dead_letter_records(path, provider, args.only, stale, earlier_unknown)
    if args.dry_run:
        _sending.check_distinct({"DEAD_LETTER_FILE": path, "--report": args.report})
        _sending.check_report(args.report)
        # A letter is sent with the timestamp it has (one without is refused above): nothing to keep.
        return dry_run(
            out,
            err,
            records,
            provider,
            str(path),
            batch_events=args.batch_events,
            stamps_kept=True,
            report=args.report,
        )
    dead_letter: Path = args.dead_letter or path.with_name(
        path.name.removesuffix(".jsonl") + ".remaining.jsonl"
    )
    _sending.check_distinct({"DEAD_LETTER_FILE": path, "--dead-letter": dead_letter, "--report": args.report})
    _sending.check_dead_letter(dead_letter)
    _sending.check_report(args.report)
    # Filled as the letters are read: a letter unknown before stays so (and keeps its moment) if this
    # replay's send surely did not store it.
    open_sender = _sending.open_sender(provider, args, dead_letter, earlier_unknown)
    result = _sending.pump(args, provider, None, records, open_sender, None, err)
    rerun = f"billing-events replay {provider.name} {shlex.quote(str(path))}"
    return finish(args, provider, str(path), result, dead_letter, None, out, err, rerun)
