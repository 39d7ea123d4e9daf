"""Credentials never reach a file or the terminal: URLs are redacted before they are written or printed.

A user may give an endpoint with a password inside (http://user:secret@host/v1) or a key in its query
(?api_key=...). The full URL is used for the requests; every record, config and message gets the
redacted form, which still names the endpoint (scheme, host, port, path), so it keys caches and shards.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# Query parameters that carry a secret (api_key, access_token, key, sig, password, ...).
_SECRET_PARAM = re.compile(r"key|token|secret|passw|sig|auth|credential", re.IGNORECASE)


def redact_url(url: str | None) -> str | None:
    """`url` without user:password@ and with secret-looking query values replaced by '***' (None stays None)."""
    if not url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]  # drop any userinfo
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
