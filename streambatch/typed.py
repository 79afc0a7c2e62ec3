"""Interface 1 of the incumbent framework's batch guide: one method per type.

Each method is a thin, typed shell over :meth:`Batch.group` or :meth:`Batch.indicator` with
the incumbent's positional arguments and keyword names, so editors and type checkers see them.
Custom indicator types get methods at run time (``Batch.__getattr__``).
"""

from __future__ import annotations

from typing import Any

from .model import Group, Indicator, parse_summary, summary_of
from .types import TypeSpec


class TypedMethods:
    """The per-type methods of :class:`streambatch.Batch`."""

    def group(self, group_type: str, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        raise NotImplementedError

    def _spec(self, type_name: Any, kind: str) -> TypeSpec:
        raise NotImplementedError

    def _indicator(self, spec: TypeSpec, summary: str, xid: str | None, **kwargs: Any) -> Indicator:
        raise NotImplementedError

    def _values(self, type_name: str, xid: str | None, kwargs: dict[str, Any], **values: Any) -> Indicator:
        spec = self._spec(type_name, "indicator")
        return self._indicator(spec, summary_of(spec, values, xid), xid, **kwargs)

    # -- groups -------------------------------------------------------------

    def adversary(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Adversary", name, xid, **kwargs)

    def attack_pattern(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Attack Pattern", name, xid, **kwargs)

    def campaign(self, name: str, first_seen: Any = None, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Campaign", name, xid, first_seen=first_seen, **kwargs)

    def course_of_action(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Course of Action", name, xid, **kwargs)

    def document(self, name: str, file_name: str | None = None, file_content: Any = None, malware: Any = None,
                 password: str | None = None, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Document", name, xid, file_name=file_name, file_content=file_content,
                          malware=malware, password=password, **kwargs)

    def email(self, name: str, subject: str, header: str, body: str, from_addr: str | None = None,
              to_addr: str | None = None, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Email", name, xid, subject=subject, header=header, body=body,
                          from_addr=from_addr, to_addr=to_addr, **kwargs)

    def event(self, name: str, event_date: Any = None, status: str | None = None, xid: str | None = None,
              **kwargs: Any) -> Group:
        return self.group("Event", name, xid, event_date=event_date, status=status, **kwargs)

    def incident(self, name: str, event_date: Any = None, status: str | None = None, xid: str | None = None,
                 **kwargs: Any) -> Group:
        return self.group("Incident", name, xid, event_date=event_date, status=status, **kwargs)

    def intrusion_set(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Intrusion Set", name, xid, **kwargs)

    def malware(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Malware", name, xid, **kwargs)

    def report(self, name: str, file_name: str | None = None, file_content: Any = None, publish_date: Any = None,
               xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Report", name, xid, file_name=file_name, file_content=file_content,
                          publish_date=publish_date, **kwargs)

    def signature(self, name: str, file_name: str, file_type: str, file_text: str, xid: str | None = None,
                  **kwargs: Any) -> Group:
        return self.group("Signature", name, xid, file_name=file_name, file_type=file_type,
                          file_text=file_text, **kwargs)

    def tactic(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Tactic", name, xid, **kwargs)

    def threat(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Threat", name, xid, **kwargs)

    def tool(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Tool", name, xid, **kwargs)

    def vulnerability(self, name: str, xid: str | None = None, **kwargs: Any) -> Group:
        return self.group("Vulnerability", name, xid, **kwargs)

    # -- indicators ---------------------------------------------------------

    def address(self, ip: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("Address", xid, kwargs, ip=ip)

    def asn(self, as_number: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("ASN", xid, kwargs, **{"AS Number": as_number})

    def cidr(self, block: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("CIDR", xid, kwargs, Block=block)

    def email_address(self, address: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("EmailAddress", xid, kwargs, address=address)

    def file(self, md5: str | None = None, sha1: str | None = None, sha256: str | None = None,
             xid: str | None = None, **kwargs: Any) -> Indicator:
        """A File indicator from any of its hashes; a hash is recognised by its length, so
        ``batch.file(sha256_value)`` works too."""
        spec = self._spec("File", "indicator")
        if md5 and not sha1 and not sha256 and len(str(md5).strip()) in (40, 64):  # a sha1/sha256 given positionally
            return self._indicator(spec, parse_summary(spec, md5, xid), xid, **kwargs)
        return self._indicator(spec, summary_of(spec, {"md5": md5, "sha1": sha1, "sha256": sha256}, xid), xid, **kwargs)

    def host(self, hostname: str, dns_active: Any = None, whois_active: Any = None, xid: str | None = None,
             **kwargs: Any) -> Indicator:
        return self._values("Host", xid, {"dns_active": dns_active, "whois_active": whois_active, **kwargs},
                            hostName=hostname)

    def mutex(self, mutex: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("Mutex", xid, kwargs, Mutex=mutex)

    def registry_key(self, key_name: str, value_name: str, value_type: str, xid: str | None = None,
                     **kwargs: Any) -> Indicator:
        return self._values("Registry Key", xid, kwargs,
                            **{"Key Name": key_name, "Value Name": value_name, "Value Type": value_type})

    def url(self, text: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("URL", xid, kwargs, text=text)

    def user_agent(self, text: str, xid: str | None = None, **kwargs: Any) -> Indicator:
        return self._values("User Agent", xid, kwargs, **{"User Agent String": text})
