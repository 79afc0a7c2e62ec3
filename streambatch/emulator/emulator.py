"""The :class:`Emulator`: a local ThreatConnect Batch API v2 on loopback, as a context manager."""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from . import rules
from .auth import Credentials
from .config import DEFAULT_OWNERS, Config, Owner, build_owners
from .faults import Fault, FaultPlan
from .server import EmulatorApp, ServerThread
from .store import Store


class Emulator:
    """A faithful local emulator of the ThreatConnect Batch API v2, served over real HTTP.

    ``with Emulator(db=path) as tc:`` starts a threaded werkzeug server on ``host:port``
    (port 0 picks a free port) and a job worker thread, and stops both on exit. Use
    ``tc.url`` (ends in ``/api``) as ``TC_API_PATH`` with ``tc.access_id``/``tc.secret_key`` or
    ``tc.token``, writing to ``tc.owner``. ``tc.store`` queries the data; ``tc.requests`` lists
    the requests received; ``tc.faults`` is the fault plan.

    Knobs (keyword arguments):

    * ``db``: SQLite file for all state (None: a temporary file, deleted on exit).
    * ``host``, ``port``: where to listen (default 127.0.0.1, ephemeral port).
    * ``owner``: the default owner's name (default "Demo Organization"); it is added to ``owners``
      if missing. ``owners``: owner names or dicts ``{"name", "type", "id", "access"}`` where
      ``access`` is a subset of ``{"read", "create", "delete"}`` (default all three; without
      ``read`` the owner is unreachable: 403). Default owners: Demo Organization and Common
      Community, both fully accessible.
    * ``access_id``, ``secret_key``, ``token``, ``token_expires`` (epoch s): the API user's
      credentials (random ones when not given). ``auth=False`` disables authentication.
      ``time_window`` (s, default 300) is the accepted HMAC clock skew; ``clock`` the server clock.
    * ``synchronous_batch_save_limit`` (items, default 100): createAndUpload jobs with at most
      this many groups + indicators + associations are processed inline and answered
      ``Completed`` without ``id`` (with it when ``sync_includes_id``).
    * ``rate`` (records/s, default None = unthrottled): speed of the background worker that takes
      queued jobs Queued -> Running -> Completed.
    * ``max_upload_bytes`` (default 100,000,000): larger inputs get 400 ``{"status":"Invalid",
      "description":"File size greater than allowable limit of N"}``.
    * ``indicator_limit`` (default 25,000 per job; error 0x1008 past it).
    * ``bare_running``: answer a Running poll with the documented bare ``{"status":"Running"}``
      instead of the default enveloped form.
    * ``custom_indicator_types``: extra E8 types (names or partial E8 entries).
    * ``attribute_types``: the instance's attribute types, names or v3 entries ``{"name",
      "maxSize", "allowMarkdown", "types"}`` (``types``: the group/indicator types it may be added
      to; default every type; ``maxSize`` default 65,500), served by ``GET /v3/attributeTypes``
      and enforced on jobs (default Description, Source, External Date Created, Additional
      Analysis and Context).
    * ``exclusion_lists``: Indicator Exclusion Lists ``{"name": "Indicator-Host", "owner": None
      (System level) or an owner name, "fixed": [values], "variable": [patterns: "*"
      wildcards, CIDR ranges], "active": True}``, served by ``GET /v3/security/exclusionLists``;
      a job's indicator on a list of the System or of the job's owner is refused (0x1005).
      ``custom_indicator_types`` entries may carry ``regexes`` (one per value), enforced too.
    * ``v3`` (default True): False answers the v3 endpoints with 404, as an older instance does.
    * ``require_label_details`` (default True): a new security label needs color + description.
    * ``strict_order``: refuse files whose ``association`` key precedes ``group``/``indicator``.
    * ``batch_enabled`` (default True): False answers E1/E3 with the plain-text 503.
    * ``create_and_upload_delete`` (default True): False refuses Delete via createAndUpload.
    * ``faults``: the initial fault plan (see :mod:`streambatch.emulator.faults`).
    * ``remote_control`` (default False): the ``/_emulator/`` control routes need no credentials,
      so they answer loopback clients only; True lets any client that reaches ``host`` use them.

    The data file (``db``, and SQLite's ``-wal``/``-shm`` beside it) holds every record
    submitted: it is created 0600 (an existing one is made private), never through a symbolic
    link; the temporary folder of ``db=None`` is 0700. ``tc.requests`` keeps request headers as
    received; ``GET /_emulator/requests`` shows credential header values as ``<redacted>``.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        owner: str = "Demo Organization",
        owners: Iterable[str | dict[str, Any] | Owner] | None = None,
        access_id: str | None = None,
        secret_key: str | None = None,
        token: str | None = None,
        token_expires: float | None = None,
        auth: bool = True,
        time_window: int = 300,
        clock: Callable[[], float] = time.time,
        synchronous_batch_save_limit: int = 100,
        sync_includes_id: bool = False,
        rate: float | None = None,
        max_upload_bytes: int = 100_000_000,
        indicator_limit: int = 25_000,
        bare_running: bool = True,
        custom_indicator_types: Iterable[str | dict[str, Any]] = (),
        attribute_types: Iterable[str | dict[str, Any]] = rules.DEFAULT_ATTRIBUTE_TYPES,
        exclusion_lists: Iterable[dict[str, Any]] = (),
        v3: bool = True,
        require_label_details: bool = True,
        strict_order: bool = True,
        batch_enabled: bool = True,
        create_and_upload_delete: bool = True,
        faults: Iterable[Fault | dict[str, Any]] = (),
        quiet: bool = True,
        remote_control: bool = False,
    ) -> None:
        owner_specs = list(owners if owners is not None else DEFAULT_OWNERS)
        built = build_owners(owner_specs)
        if owner not in {o.name for o in built}:
            built.insert(0, Owner(name=owner, id=max((o.id for o in built), default=0) + 1))
        credentials = Credentials(
            access_id=access_id or "emulator-" + secrets.token_hex(4),
            secret_key=secret_key or secrets.token_urlsafe(32),
            token=token or f"APIV2:1:emulator:{int(time.time())}:{secrets.token_urlsafe(24)}",
            token_expires=token_expires,
        )
        self.config = Config(
            credentials=credentials, owners=built, default_owner=owner, auth=auth,
            time_window=time_window, clock=clock, batch_enabled=batch_enabled,
            synchronous_batch_save_limit=synchronous_batch_save_limit, sync_includes_id=sync_includes_id,
            create_and_upload_delete=create_and_upload_delete, rate=rate,
            max_upload_bytes=max_upload_bytes, indicator_limit=indicator_limit, bare_running=bare_running,
            custom_indicator_types=list(custom_indicator_types), attribute_types=tuple(attribute_types),
            exclusion_lists=list(exclusion_lists), v3=v3,
            require_label_details=require_label_details, strict_order=strict_order,
        )
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if db is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="tc-emulator-")
            db = Path(self._tempdir.name) / "emulator.sqlite"
        self.db = Path(db)
        self.host = host
        self._port = port
        self._quiet = quiet
        self.faults = FaultPlan(faults)
        self.store = Store(self.db)
        self.app = EmulatorApp(self.config, self.store, self.faults, remote_control=remote_control)
        self._server: ServerThread | None = None

    # --------------------------------------------------------------------- attributes

    @property
    def access_id(self) -> str:
        return self.config.credentials.access_id

    @property
    def secret_key(self) -> str:
        return self.config.credentials.secret_key

    @property
    def token(self) -> str | None:
        return self.config.credentials.token

    @property
    def owner(self) -> str:
        return self.config.default_owner

    @property
    def port(self) -> int:
        return self._server.port if self._server else self._port

    @property
    def base(self) -> str:
        """The server root (``http://host:port``), where ``/_emulator/`` lives."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL to use as ``TC_API_PATH``."""
        return f"{self.base}/api"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Requests received so far (oldest first), as logged by the server, headers as received
        (``Authorization`` included: for tests in this process; the HTTP control route redacts)."""
        return self.app.request_log()

    def __repr__(self) -> str:
        state = "running" if self._server else "stopped"
        return f"Emulator(url={self.url!r}, owner={self.owner!r}, db={str(self.db)!r}, {state})"

    # ---------------------------------------------------------------------- lifecycle

    def start(self) -> "Emulator":
        if self._server is None:
            self._server = ServerThread(self.app, self.host, self._port, quiet=self._quiet)
            self.app.worker.start()
            self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.app.worker.stop()

    def close(self) -> None:
        self.stop()
        self.store.close()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------- test aids

    def reset(self) -> None:
        """Forget all data, jobs, faults and logged requests (the configuration stays)."""
        self.app.reset()

    def set_rules(self, **rules: Any) -> None:
        """Replace the instance's ``attribute_types`` and/or ``exclusion_lists`` (as the
        constructor takes them)."""
        self.app.set_rules(**rules)

    def set_faults(self, faults: Iterable[Fault | dict[str, Any]]) -> None:
        """Replace the fault plan (held jobs whose fault is gone are released)."""
        self.faults.replace(faults)
        self.app.worker.release()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until the worker has finished every queued job that is not held by a fault."""
        return self.app.worker.wait_idle(timeout)
