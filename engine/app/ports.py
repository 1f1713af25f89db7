"""The ports of the use cases to Asterisk and to the ERP: what the application layer needs
from them.

The use cases (:mod:`engine.app.calls`, :mod:`engine.app.controls`,
:mod:`engine.app.ivr_calls`) decide and record; the Asterisk flows do the telephony and
:mod:`engine.outbound` the HTTP requests. They meet here, as Protocols, so the API and the
CLI depend on the application layer alone and a use case runs in tests with a stand-in.
The daemon wires the implementations:
:class:`~engine.app.dialing.DialerRouter` is the :class:`Dialer` (over
:class:`~engine.asterisk.flows.click_to_call.ClickToCall`, and
:class:`~engine.app.carrier_calls.CarrierDialer` for sessions an HTTP carrier places),
:class:`~engine.asterisk.flows.controls.CallControls` the :class:`InCallControls`, and
:class:`~engine.outbound.HttpErpLookup` the IVR's :class:`ErpLookup`. With ARI disabled
the router has no Asterisk dialer and there are no :class:`InCallControls`: what needs
them raises :class:`~engine.errors.FeatureUnavailable`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

from engine.domain.click_to_call import Leg
from engine.domain.ivr import HttpLookup, LookupResult
from engine.domain.netpolicy import OutboundPolicy
from engine.domain.transcripts import Transcript
from engine.domain.transfer import TransferType
from engine.providers.base import CarrierAdapter
from engine.store.records import ProviderSecrets, StoredProvider, StoredSession, StoredTransfer

__all__ = [
    "CallQueue",
    "Carriers",
    "Dialer",
    "ErpLookup",
    "FileDeletion",
    "InCallControls",
    "MuteDirection",
    "OwnerLink",
    "RecordingFiles",
    "Transcriber",
]


class MuteDirection(enum.StrEnum):
    """Which way a party's audio is cut."""

    IN = "in"  # the party is not heard
    OUT = "out"  # the party hears nothing
    BOTH = "both"


class Dialer(Protocol):
    """What places and ends calls on a telephony backend (over ARI: the click-to-call flow,
    :class:`~engine.asterisk.flows.click_to_call.ClickToCall`)."""

    @property
    def ready(self) -> bool:
        """Whether calls can be placed now (the link is up)."""
        ...

    def start_call(self, session: StoredSession) -> None:
        """Begin dialing a stored, queued session (in the background)."""

    def writes_behind(self, provider_type: str | None) -> bool:
        """Whether the facts of a session carried by ``provider_type`` (None: no provider)
        are written behind (the journal owns it while it lives: the caller adopts it before
        :meth:`start_call`), or through."""
        ...

    async def end_call(self, session: StoredSession, reason: str) -> StoredSession:
        """Hang up every leg and end the session; return it as stored."""
        ...

    async def transfer(
        self, session: StoredSession, kind: TransferType, target: str, leg: Leg
    ) -> StoredTransfer:
        """Start a blind or attended transfer replacing a connected call's ``leg``."""
        ...

    async def complete_transfer(self, session: StoredSession) -> StoredTransfer:
        """Complete the session's attended transfer."""
        ...

    async def cancel_transfer(self, session: StoredSession) -> StoredTransfer:
        """Cancel the session's attended transfer."""
        ...


class CallQueue(Protocol):
    """Where ``initiate`` leaves a call stored unclaimed, for whichever engine has room to
    claim and dial it (``node.claim_queue``: :class:`~engine.claim_queue.ClaimQueue`). The
    insert itself wakes every engine's claimer (NOTIFY), this one's included, so an idle
    engine elsewhere has the same chance as this one."""

    def take_here(self) -> bool:
        """Whether this engine would claim a call now, ahead of every other: it has room
        and no other engine is as idle (then ``initiate`` dials it here at once, as a lone
        engine does, without a round through the queue). A yes holds one call's room
        until :meth:`taken`, so calls initiated at once never take more than the room."""
        ...

    def taken(self) -> None:
        """The call ``take_here`` said yes to is this engine's live call now (or was never
        stored): the room it held is released."""
        ...


class Carriers(Protocol):
    """Where the carrier adapter of a provider row comes from
    (:class:`~engine.providers.directory.CarrierDirectory`)."""

    def cached(self, provider: StoredProvider) -> CarrierAdapter | None:
        """The provider's adapter if one was built from this version of its row."""
        ...

    def adapter(self, provider: StoredProvider, secrets: ProviderSecrets) -> CarrierAdapter:
        """The provider's adapter (ConfigError naming what its row lacks)."""
        ...


class InCallControls(Protocol):
    """The telephony half of the in-call controls of a connected call.

    Each method acts on Asterisk only (the use case checks the session and records the
    event); each raises :class:`~engine.errors.Conflict` when the leg, or the recording, is
    already gone.
    """

    async def hold(self, session: StoredSession, leg: Leg) -> None:
        """Play music on hold to ``leg`` and stop the other side hearing it."""

    async def unhold(self, session: StoredSession, leg: Leg) -> None:
        """Undo :meth:`hold` (also lifts an inbound mute set before the hold)."""

    async def mute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None:
        """Cut ``leg``'s audio in ``direction``."""

    async def unmute(self, session: StoredSession, leg: Leg, direction: MuteDirection) -> None:
        """Restore ``leg``'s audio in ``direction``."""

    async def send_dtmf(self, session: StoredSession, leg: Leg, digits: str) -> None:
        """Play DTMF ``digits`` to ``leg``."""

    async def pause_recording(self, session: StoredSession) -> str:
        """Pause the call's live recording; return the recording's name."""
        ...

    async def resume_recording(self, session: StoredSession) -> str:
        """Resume the call's live recording; return the recording's name."""
        ...


class OwnerLink(Protocol):
    """What reaches the engine that owns a session when that is another engine sharing the
    database (:class:`~engine.node_link.NodeLink`: a ``node_command`` row and NOTIFY)."""

    @property
    def node(self) -> str:
        """This engine's node name."""
        ...

    async def forward(
        self, session: StoredSession, command: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Have ``session.node`` carry out ``command`` (:mod:`engine.app.forwarding`); its
        result as it wrote it. NodeUnavailable when it did not answer in time (the command
        is then withdrawn, never carried out later)."""
        ...


class ErpLookup(Protocol):
    """What asks a tenant's ERP for a value during an IVR call (a menu's ``http_lookup``)."""

    async def ask(self, lookup: HttpLookup, policy: OutboundPolicy) -> LookupResult:
        """The ERP's answer to ``lookup``, sent only where ``policy`` allows.

        Never raises for what the ERP or the network does: a refused destination, an error
        status, no answer within ``lookup.timeout_ms`` or a connection error is
        ``ok=False`` with why.
        """
        ...


FileDeletion: TypeAlias = Literal["deleted", "missing", "refused", "failed"]
"""What became of a recording file the retention deleted: ``deleted``; ``missing`` (it
was already gone); ``refused`` (its path is outside the recording directory: not ours to
delete); ``failed`` (the system refused, e.g. permissions: logged, tried again next run)."""


class RecordingFiles(Protocol):
    """Where call recordings live (Asterisk's recording spool, as the engine's host sees
    it: :class:`~engine.asterisk.recording_files.SpoolRecordingFiles`)."""

    async def delete(self, path: str) -> FileDeletion:
        """Delete the recording file at ``path`` (as stored on the session)."""
        ...


class Transcriber(Protocol):
    """Speech to text for one recording, offline, on this host
    (:mod:`engine.transcription`: PocketSphinx, faster-whisper). CPU-bound and blocking:
    the worker calls it in a separate process. It must be picklable (a backend keeps its
    loaded model per process, not in its pickled state)."""

    @property
    def name(self) -> str:
        """The backend's name, stored with each transcript (``pocketsphinx``, ``whisper``)."""
        ...

    @property
    def model(self) -> str:
        """Which model it runs, stored with each transcript."""
        ...

    def transcribe(self, path: Path) -> Transcript:
        """The recording's text and words with timings; TranscriptionError when the audio
        or the model cannot be used."""
        ...
