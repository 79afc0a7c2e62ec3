"""The werkzeug WSGI application of the emulator and the thread that serves it.

Routes (served under ``/api/v2/...`` and ``/v2/...``) are those of spec §2 (E1-E9); the
emulator-only control routes live under ``/_emulator/`` and need no credentials; they answer
loopback clients only (403 for any other peer) unless ``remote_control`` is set. Every request
to the API is logged (method, path, raw query, headers, content type, multipart part names,
status) before the fault plan and authentication are applied. In the process the log keeps the
headers as received (tests check signatures with them); ``GET /_emulator/requests`` shows the
values of credential headers (:func:`redact_headers`) as ``<redacted>``.
"""

from __future__ import annotations

import gzip
import ipaddress
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Mapping
from urllib.parse import urlencode

import orjson
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule, Submount
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from .auth import Authenticator, AuthError, raw_target
from .catalog import IndicatorCatalog
from .config import Config
from .faults import Fault, FaultPlan
from . import rules
from .processor import Processor, count_records
from .settings import SettingsError, parse_settings
from .store import Store
from .worker import Worker

NOT_FOUND = "The requested resource was not found"
NO_PERMISSION = ("Unable to perform the requested operation due to the following error(s): You do not have "
                 "permission to {verb} Indicators; Groups; Attributes; Tags; Security Labels;")
BATCH_DISABLED = ("Batch job api is not available.  Ensure that batchJobEnabled is true and document storage "
                  "is enabled and configured;")
SEVERITIES = {"err": "Error", "error": "Error", "warn": "Warning", "warning": "Warning", "info": "Info"}

_API = [
    Rule("/v2/batch", methods=["POST"], endpoint="create_job"),
    Rule("/v2/batch/createAndUpload", methods=["POST"], endpoint="create_and_upload"),
    Rule("/v2/batch/<int:job_id>", methods=["POST"], endpoint="upload"),
    Rule("/v2/batch/<int:job_id>", methods=["GET"], endpoint="status"),
    Rule("/v2/batch/<int:job_id>/errors", methods=["GET"], endpoint="errors"),
    Rule("/v2/batch/<int:job_id>/results", methods=["GET"], endpoint="results"),
    Rule("/v2/groups/<any(documents, reports):branch>/<ident>/upload", methods=["POST", "PUT"], endpoint="file_upload"),
    Rule("/v2/types/indicatorTypes", methods=["GET"], endpoint="indicator_types"),
    Rule("/v2/types/indicatorTypes/<path:name>", methods=["GET"], endpoint="indicator_type"),
    Rule("/v2/owners", methods=["GET"], endpoint="owners"),
    Rule("/v3/attributeTypes", methods=["GET"], endpoint="attribute_types"),
    Rule("/v3/security/exclusionLists", methods=["GET"], endpoint="exclusion_lists"),
]
_CONTROL = [
    Rule("/_emulator/state", methods=["GET"], endpoint="ctl_state"),
    Rule("/_emulator/reset", methods=["POST"], endpoint="ctl_reset"),
    Rule("/_emulator/faults", methods=["GET", "POST", "PUT", "DELETE"], endpoint="ctl_faults"),
    Rule("/_emulator/requests", methods=["GET", "DELETE"], endpoint="ctl_requests"),
    Rule("/_emulator/jobs", methods=["GET"], endpoint="ctl_jobs"),
    Rule("/_emulator/rules", methods=["GET", "PUT"], endpoint="ctl_rules"),
]
URL_MAP = Map([*_API, Submount("/api", [r.empty() for r in _API]), *_CONTROL], strict_slashes=False)


REDACTED = "<redacted>"
#: A header whose name contains one of these (any case) carries a credential.
SECRET_HEADER_WORDS = ("token", "secret", "key", "auth", "password", "cookie")
CONTROL_REMOTE_REFUSED = ("The emulator's control routes answer loopback clients only (they need no credentials); "
                          "start it with remote_control=True (serve --remote-control) to allow others")


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with the value of every credential header (Authorization,
    TC-Token, and any name containing token, secret, key, auth, password or cookie, in any
    case) replaced by ``<redacted>``; names and order kept."""
    return {name: REDACTED if any(word in name.lower() for word in SECRET_HEADER_WORDS) else value
            for name, value in headers.items()}


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """A request log entry as the control route shows it: credentials redacted."""
    return {**entry, "headers": redact_headers(entry["headers"])}


def is_loopback(addr: str | None) -> bool:
    """Whether a peer address (``REMOTE_ADDR``) is a loopback address (127.0.0.0/8, ::1,
    or an IPv4-mapped loopback address)."""
    try:
        ip = ipaddress.ip_address((addr or "").split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or bool(mapped and mapped.is_loopback)


class _Request(Request):
    """No form-size caps: batch files arrive as (possibly large) plain form fields too."""

    max_form_memory_size = None
    max_content_length = None
    max_form_parts = None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON reply with ``Content-Type: application/json`` (tcex checks for it)."""
    return Response(orjson.dumps(body), status=status, headers=headers, content_type="application/json")


def failure(message: str, status: int) -> Response:
    return json_response({"status": "Failure", "message": message}, status)


def invalid(description: str, status: int = 400) -> Response:
    return json_response({"status": "Invalid", "description": description}, status)


def plain(text: str, status: int) -> Response:
    return Response(text, status=status, content_type="text/plain")


def _is_encrypted_zip(data: bytes) -> bool:
    """A zip local file header whose general-purpose flag has the encryption bit set."""
    return len(data) >= 8 and data[:4] == b"PK\x03\x04" and bool(int.from_bytes(data[6:8], "little") & 1)


class _Dropped(ConnectionAbortedError):
    """Raised after cutting a connection on purpose; werkzeug treats it as a dropped client."""


class EmulatorApp:
    """The WSGI application: request log, fault plan, authentication, then the endpoints."""

    def __init__(self, config: Config, store: Store, faults: FaultPlan, request_log_size: int = 10_000,
                 remote_control: bool = False) -> None:
        self.config = config
        self.remote_control = remote_control
        self.store = store
        self.faults = faults
        self.catalog = IndicatorCatalog(config.custom_indicator_types)
        self.processor = Processor(
            store, self.catalog, indicator_limit=config.indicator_limit,
            require_label_details=config.require_label_details, strict_order=config.strict_order)
        self.set_rules(attribute_types=config.attribute_types, exclusion_lists=config.exclusion_lists)
        self.worker = Worker(store, self.processor, faults, rate=config.rate)
        self.auth = Authenticator(config.credentials, config.time_window, config.clock)
        self.requests: deque[dict[str, Any]] = deque(maxlen=request_log_size)
        self._log_lock = threading.Lock()

    # ---------------------------------------------------------------------------- WSGI

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        request = _Request(environ)
        adapter = URL_MAP.bind_to_environ(environ)
        if request.path.startswith("/_emulator/"):
            if not self.remote_control and not is_loopback(environ.get("REMOTE_ADDR")):
                return failure(CONTROL_REMOTE_REFUSED, 403)(environ, start_response)
            return self._dispatch(adapter, request, control=True)(environ, start_response)
        entry = self._log(request)
        path = request.path[4:] if request.path.startswith("/api/") else request.path
        fired = self.faults.for_request(request.method, path)
        for fault in fired:
            if fault.kind == "delay":
                time.sleep(fault.seconds)
        status_fault = next((f for f in fired if f.kind == "status"), None)
        drop = next((f for f in fired if f.kind == "drop"), None)
        entry["fault"] = [f.kind for f in fired] or None
        if (status_fault and not status_fault.process) or (drop and not drop.process):
            response = self._fault_response(status_fault) if status_fault else failure("dropped", 500)
        else:
            response = self._dispatch(adapter, request, control=False)
            if status_fault:
                response = self._fault_response(status_fault)
        entry["parts"] = self._parts(request)
        entry["status"] = response.status_code
        if drop:
            self._drop(environ, response)
        return response(environ, start_response)

    def _log(self, request: _Request) -> dict[str, Any]:
        request.get_data(cache=True)  # read the body now, so keep-alive stays in sync
        entry = {
            "time": time.time(), "method": request.method, "path": request.path,
            "query": request.environ.get("QUERY_STRING", ""), "raw_uri": raw_target(request.environ),
            "headers": dict(request.headers), "content_type": request.headers.get("Content-Type"),
            "content_length": len(request.get_data(cache=True)), "parts": [], "status": None, "fault": None,
        }
        with self._log_lock:
            self.requests.append(entry)
        return entry

    @staticmethod
    def _parts(request: _Request) -> list[dict[str, Any]]:
        if request.mimetype != "multipart/form-data":
            return []
        parts = [{"name": n, "filename": f.filename, "kind": "file"} for n, f in request.files.items(multi=True)]
        parts += [{"name": n, "filename": None, "kind": "field"} for n in request.form.keys()]
        return parts

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
        body = {"status": "Failure", "message": fault.body or f"Injected fault: HTTP {fault.status}"}
        return json_response(body, fault.status, headers)

    @staticmethod
    def _drop(environ: dict, response: Response) -> None:
        """Send the status line, headers and half the body, then cut the connection."""
        sock: socket.socket | None = environ.get("werkzeug.socket")
        body = response.get_data()
        head = (f"HTTP/1.1 {response.status}\r\nContent-Type: {response.content_type}\r\n"
                f"Content-Length: {len(body) + 64}\r\n\r\n").encode()
        if sock is not None:
            try:
                sock.sendall(head + body[: len(body) // 2])
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise _Dropped("connection dropped by the fault plan")

    def _dispatch(self, adapter: Any, request: _Request, control: bool) -> Response:
        if not control and self.config.auth:
            try:
                self.auth.check(request.environ)
            except AuthError as exc:
                return failure(str(exc), 401)
        try:
            endpoint, args = adapter.match(request.path, method=request.method)
        except MethodNotAllowed:
            return failure("Method not allowed", 405)
        except (NotFound, HTTPException):
            return failure(NOT_FOUND, 404)
        if endpoint.startswith("ctl_") != control:
            return failure(NOT_FOUND, 404)
        return getattr(self, endpoint)(request, **args)

    def set_rules(self, attribute_types: Any = None, exclusion_lists: Any = None) -> None:
        """The attribute types and exclusion lists served by the v3 endpoints and enforced on jobs."""
        if attribute_types is not None:
            self.config.attribute_types = tuple(attribute_types)
        if exclusion_lists is not None:
            self.config.exclusion_lists = list(exclusion_lists)
        ids = {o.name: o.id for o in self.config.owners}
        self.exclusion_entries = [rules.exclusion_list_entry(e, i, ids) for i, e in enumerate(self.config.exclusion_lists)]
        self.attribute_entries = [rules.attribute_type_entry(t, i) for i, t in enumerate(self.config.attribute_types)]
        names = [e["name"] for e in self.catalog.listing(False)]
        self.processor.set_rules(tuple(self.attribute_entries), rules.Exclusions(self.exclusion_entries, names))

    # -------------------------------------------------------------------------- helpers

    def _owner_refusal(self, name: Any, need: str | None) -> Response | None:
        """403 for an owner the user cannot reach; plain-text 401 for a missing permission."""
        owner = self.config.owner(name) if isinstance(name, str) else None
        if owner is None or "read" not in owner.access:
            return failure("Access Denied", 403)
        if need and need not in owner.access:
            return plain(NO_PERMISSION.format(verb=need), 401)
        return None

    def _settings(self, text: bytes | str) -> tuple[dict[str, Any] | None, Response | None]:
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError:
            return None, failure("Batch settings are not valid JSON", 400)
        try:
            settings = parse_settings(raw)
        except SettingsError as exc:
            return None, failure(str(exc), 400)
        need = "delete" if settings["action"] == "Delete" else "create"
        return settings, self._owner_refusal(settings["owner"], need)

    def _too_large(self, size: int) -> Response | None:
        limit = self.config.max_upload_bytes
        return invalid(f"File size greater than allowable limit of {limit}") if size > limit else None

    @staticmethod
    def _bool_arg(request: _Request, name: str) -> bool:
        return request.args.get(name, "").lower() == "true"

    def _batch_status(self, job: dict[str, Any], include_additional: bool, with_id: bool = True) -> dict[str, Any]:
        c = job["counters"]
        out: dict[str, Any] = {"id": job["id"]} if with_id else {}
        out["status"] = job["status"]
        out.update(errorCount=c["errorCount"], successCount=c["successCount"], unprocessCount=c["unprocessCount"])
        if include_additional:
            for name in ("successGroupCount", "errorGroupCount", "successIndicatorCount", "errorIndicatorCount",
                         "successAssociationCount", "errorAssociationCount"):
                out[name] = c[name]
        return out

    def _start(self, job_id: int, content: bytes, mode: str) -> tuple[bool, float | None]:
        """Store a job's input; returns (held-or-slowed?, slow rate)."""
        rate, hold = self.faults.for_job(job_id)
        self.store.update_job(job_id, input=content, records=count_records(content), mode=mode)
        return hold or rate is not None, rate

    def _queue(self, job_id: int, rate: float | None) -> None:
        self.store.update_job(job_id, status="Queued")
        self.worker.submit(job_id, rate)

    # ------------------------------------------------------------------------ endpoints

    def create_job(self, request: _Request) -> Response:
        """E1: create a job from a settings object."""
        if not self.config.batch_enabled:
            return plain(BATCH_DISABLED, 503)
        settings, refusal = self._settings(request.get_data())
        if refusal or settings is None:
            return refusal  # type: ignore[return-value]
        job_id = self.store.create_job(settings["owner"], settings, mode="two-step")
        return json_response({"status": "Success", "data": {"batchId": job_id}}, 201)

    def upload(self, request: _Request, job_id: int) -> Response:
        """E2: upload the input file of a Created job (octet-stream); always queued."""
        job = self.store.job(job_id)
        if job is None:
            return failure(NOT_FOUND, 404)
        if job["status"] != "Created":
            return invalid(f"Batch {job_id} is not in Created state (status {job['status']})")
        if request.mimetype != "application/octet-stream":
            return invalid("Content-Type must be application/octet-stream")
        data = request.get_data()
        too_large = self._too_large(len(data))
        if too_large:
            return too_large
        _, rate = self._start(job_id, data, "two-step")
        self._queue(job_id, rate)
        return json_response({"status": "Queued"}, 202)

    def create_and_upload(self, request: _Request) -> Response:
        """E3: multipart ``config`` + ``content``; small jobs run inline, larger ones queue."""
        if not self.config.batch_enabled:
            return plain(BATCH_DISABLED, 503)
        parts: dict[str, bytes] = {}
        for name in ("config", "content"):
            if name in request.files:
                parts[name] = request.files[name].read()
            elif name in request.form:
                parts[name] = request.form[name].encode()
            else:
                return failure(f"Missing multipart part '{name}'", 400)
        settings, refusal = self._settings(parts["config"])
        if refusal or settings is None:
            return refusal  # type: ignore[return-value]
        if settings["action"] == "Delete" and not self.config.create_and_upload_delete:
            return failure("Delete not supported by createAndUpload", 400)
        content = parts["content"]
        too_large = self._too_large(len(content))
        if too_large:
            return too_large
        job_id = self.store.create_job(settings["owner"], settings, mode="queued")
        special, rate = self._start(job_id, content, "queued")
        records = count_records(content)
        include = self._bool_arg(request, "includeAdditional")
        if not special and sum(records.values()) <= self.config.synchronous_batch_save_limit:
            self.store.update_job(job_id, mode="sync")
            self.processor.run(job_id, settings, content)
            job = self.store.job(job_id)
            status = self._batch_status(job, include, with_id=self.config.sync_includes_id)  # type: ignore[arg-type]
            return json_response({"status": "Success", "data": {"batchStatus": status}}, 200)
        self._queue(job_id, rate)
        return json_response({"status": "Success", "data": {"batchStatus": {"id": job_id, "status": "Queued"}}}, 201)

    def status(self, request: _Request, job_id: int) -> Response:
        """E4: job status, with the additional counters on request."""
        job = self.store.job(job_id)
        if job is None:
            return failure(NOT_FOUND, 404)
        if job["status"] == "Running" and self.config.bare_running:
            return json_response({"status": "Running"})
        status = self._batch_status(job, self._bool_arg(request, "includeAdditional"))
        return json_response({"status": "Success", "data": {"batchStatus": status}})

    def _finished_errors(self, job_id: int) -> tuple[list[dict[str, Any]] | None, Response | None]:
        job = self.store.job(job_id)
        if job is None:
            return None, failure(NOT_FOUND, 404)
        if job["status"] != "Completed":
            return None, invalid("Batch still in Running state")
        records = self.store.errors(job_id)
        if not records:
            return None, failure(NOT_FOUND, 404)
        return records, None

    def errors(self, request: _Request, job_id: int) -> Response:
        """E5: the error file, a gzip-compressed JSON array."""
        records, refusal = self._finished_errors(job_id)
        if refusal:
            return refusal
        body = gzip.compress(orjson.dumps(records))
        return Response(body, 200, headers={"Content-Encoding": "gzip"}, content_type="application/octet-stream")

    def results(self, request: _Request, job_id: int) -> Response:
        """E6: error records filtered by code, contains and severity."""
        records, refusal = self._finished_errors(job_id)
        if refusal or records is None:
            return refusal  # type: ignore[return-value]
        code = request.args.get("code")
        if code is not None:
            if not code.lower().startswith("0x"):
                return failure("code must start with 0x", 400)
            records = [r for r in records if r["code"].lower() == code.lower()]
        contains = request.args.get("contains")
        if contains:
            needle = contains.lower()
            records = [r for r in records if needle in r["errorReason"].lower() or needle in r["errorMessage"].lower()]
        wanted = [v.strip().lower() for raw in request.args.getlist("severity") for v in raw.split(",") if v.strip()]
        if wanted:
            if any(v not in SEVERITIES for v in wanted):
                return failure(f"severity must be one of {', '.join(SEVERITIES)}", 400)
            allowed = {SEVERITIES[v] for v in wanted}
            records = [r for r in records if r["severity"] in allowed]
        return json_response(records)

    def file_upload(self, request: _Request, branch: str, ident: str) -> Response:
        """E7: upload (POST) or replace (PUT / updateIfExists) a Document or Report file."""
        owner = request.args.get("owner") or self.config.default_owner
        refusal = self._owner_refusal(owner, "create")
        if refusal:
            return refusal
        group = None
        if ident.isdigit():
            found = self.store.find_group_by_id(int(ident))
            group = found if found and found["owner"] == owner else None
        if group is None:
            group = self.store.find_group(owner, ident)
        if group is None:
            return failure(NOT_FOUND, 404)
        expected = "Report" if branch == "reports" else "Document"
        if group["type"] != expected:
            return failure(f"Group {group['xid']} is a {group['type']}, not a {expected}", 400)
        replace = request.method == "PUT" or self._bool_arg(request, "updateIfExists")
        if self.store.has_file(group["id"]) and not replace:
            return failure("A file already exists for this group; use PUT or updateIfExists=true to replace it", 401)
        data = request.get_data()
        if group["fields"].get("malware") and not _is_encrypted_zip(data):
            return failure("Malware documents must be uploaded as password-protected zip files", 400)
        with self.store.tx():
            self.store.put_file(owner, group["id"], data)
            if request.args.get("filename"):
                group["fields"]["fileName"] = request.args["filename"]
                self.store.put_group(group)
        return json_response({"status": "Success"})

    def indicator_types(self, request: _Request) -> Response:
        """E8: the indicator type catalogue."""
        types = self.catalog.listing(self._bool_arg(request, "includeAdditional"))
        return json_response({"status": "Success", "data": {"resultCount": len(types), "indicatorType": types}})

    def indicator_type(self, request: _Request, name: str) -> Response:
        entry = self.catalog.entry(name, self._bool_arg(request, "includeAdditional"))
        if entry is None:
            return failure(NOT_FOUND, 404)
        return json_response({"status": "Success", "data": {"indicatorType": entry}})

    def owners(self, request: _Request) -> Response:
        """E9: the owners the API user can reach."""
        owners = [{"id": o.id, "name": o.name, "type": o.type} for o in self.config.owners if "read" in o.access]
        return json_response({"status": "Success", "data": {"resultCount": len(owners), "owner": owners}})

    def _v3_page(self, request: _Request, items: list[dict[str, Any]]) -> Response:
        """A v3 list reply: ``data``, ``count`` and, when more follow, ``next`` (the URL of the
        next page), paged by ``resultStart`` and ``resultLimit`` (default 100)."""
        if not self.config.v3:
            return failure(NOT_FOUND, 404)
        try:
            start = max(0, int(request.args.get("resultStart", 0)))
            limit = max(1, int(request.args.get("resultLimit", 100)))
        except ValueError:
            return failure("resultStart and resultLimit must be integers", 400)
        body: dict[str, Any] = {"data": items[start:start + limit], "count": len(items), "status": "Success"}
        if start + limit < len(items):
            args = {**request.args.to_dict(), "resultStart": str(start + limit), "resultLimit": str(limit)}
            body["next"] = f"{request.base_url}?{urlencode(args)}"
        return json_response(body)

    def attribute_types(self, request: _Request) -> Response:
        """GET /v3/attributeTypes: the instance's attribute types."""
        return self._v3_page(request, [{k: v for k, v in e.items() if k != "types"} | (
            {"types": e["types"]} if e.get("types") else {}) for e in self.attribute_entries])

    def exclusion_lists(self, request: _Request) -> Response:
        """GET /v3/security/exclusionLists: System lists and those of ``owner`` (every owner the
        user can read when not given); the values only with ``fields=values``."""
        wanted = request.args.get("owner")
        readable = {o.name for o in self.config.owners if "read" in o.access}
        with_values = "values" in request.args.getlist("fields")
        out = []
        for entry in self.exclusion_entries:
            owner = entry.get("owner")
            if owner is not None and (owner not in readable or (wanted is not None and owner != wanted)):
                continue
            out.append(entry if with_values else
                       {k: v for k, v in entry.items() if k not in ("fixedValues", "variableValues")})
        return self._v3_page(request, out)

    # ---------------------------------------------------------------- control endpoints

    def ctl_rules(self, request: _Request) -> Response:
        """GET: the instance's rules; PUT ``{"attribute_types": [...], "exclusion_lists": [...]}``
        replaces them (either key may be left out)."""
        if request.method == "PUT":
            try:
                body = orjson.loads(request.get_data())
                unknown = set(body) - {"attribute_types", "exclusion_lists"}
                if unknown:
                    raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
                self.set_rules(**body)
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                return failure(f"Bad rules: {exc}", 400)
        return json_response({"attribute_types": self.attribute_entries, "exclusion_lists": self.exclusion_entries,
                              "custom_indicator_types": self.config.custom_indicator_types})

    def ctl_state(self, request: _Request) -> Response:
        owners = [o.name for o in self.config.owners]
        return json_response({"owners": self.store.state(owners), "jobs": self.store.jobs()})

    def ctl_reset(self, request: _Request) -> Response:
        self.reset()
        return json_response({"status": "Success"})

    def ctl_faults(self, request: _Request) -> Response:
        try:
            if request.method in ("POST", "PUT"):
                body = orjson.loads(request.get_data())
                specs = body if isinstance(body, list) else [body]
                (self.faults.add if request.method == "POST" else self.faults.replace)(specs)
            elif request.method == "DELETE":
                self.faults.clear()
        except (ValueError, TypeError) as exc:
            return failure(f"Bad fault plan: {exc}", 400)
        self.worker.release()
        return json_response(self.faults.as_list())

    def ctl_requests(self, request: _Request) -> Response:
        """The request log, with credential header values redacted (over HTTP, unauthenticated)."""
        if request.method == "DELETE":
            with self._log_lock:
                self.requests.clear()
        return json_response([_shown(entry) for entry in self.request_log()])

    def ctl_jobs(self, request: _Request) -> Response:
        return json_response(self.store.jobs())

    # ----------------------------------------------------------------------- lifecycle

    def request_log(self) -> list[dict[str, Any]]:
        """The requests received, headers as they came (in this process only; the control
        route redacts them)."""
        with self._log_lock:
            return list(self.requests)

    def reset(self) -> None:
        """Forget all data, jobs, faults and logged requests."""
        self.worker.drain()
        self.faults.clear()
        self.store.wipe()
        with self._log_lock:
            self.requests.clear()


class _QuietHandler(WSGIRequestHandler):
    """No per-request access log lines on stderr."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class ServerThread:
    """Serves an app with werkzeug's threaded server on a background thread."""

    def __init__(self, app: Callable, host: str, port: int, quiet: bool = True) -> None:
        self.server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=_QuietHandler if quiet else None)
        self.server.daemon_threads = True  # type: ignore[attr-defined]
        self.port = self.server.server_port
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="tc-emulator-http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)
