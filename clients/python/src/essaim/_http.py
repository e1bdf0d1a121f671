"""The REST transport: JSON over HTTP with the cluster token, errors as exceptions.

The coordinator's REST API is described by its OpenAPI document at
``/api/v1/openapi.json``; every call here is one of its paths.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Mapping, Optional


class EssaimError(Exception):
    """A call the coordinator refused, or one that did not reach it.

    ``status`` is the HTTP status (``None`` when the coordinator could not be reached);
    the message is the coordinator's own explanation.
    """

    def __init__(self, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.status = status


class Transport:
    """Sends JSON requests to one coordinator."""

    def __init__(self, url: str, token: Optional[str], timeout: float) -> None:
        if not url.startswith(("http://", "https://")):
            url = "http://" + url
        self.base = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        url = self.base + path
        if query:
            pairs = {k: v for k, v in query.items() if v is not None}
            if pairs:
                url += "?" + urllib.parse.urlencode(pairs)
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                text = answer.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            raise EssaimError(_explanation(error), error.code) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise EssaimError(f"cannot reach the coordinator at {self.base}: {reason}") from None
        return json.loads(text) if text else None


    def upload(self, path: str, sha256: str, size: int) -> Any:
        """Streams a file to the coordinator's content-addressed store, declaring its
        hash so that the coordinator refuses other bytes."""
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "essaim-sha256": sha256,
            "Accept": "application/json",
        }
        if self.token:
            headers["Authorization"] = "Bearer " + self.token
        with open(path, "rb") as body:
            request = urllib.request.Request(
                self.base + "/registry/v1/artifacts", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return json.loads(answer.read().decode("utf-8"))
            except urllib.error.HTTPError as error:
                raise EssaimError(f"{path}: {_explanation(error)}", error.code) from None
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise EssaimError(f"cannot upload {path} to {self.base}: {reason}") from None


def _explanation(error: urllib.error.HTTPError) -> str:
    text = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {error.code}: {text.strip() or error.reason}"
