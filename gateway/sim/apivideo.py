"""A stand-in for api.video's API: the calls a recording's publishing makes, on loopback.

This is not api.video. It follows api.video's documented contract (https://docs.api.video)
for the part the gateway uses, strictly enough that a client that gets it wrong fails here:
- ``POST /auth/api-key`` ``{"apiKey"}``: ``200`` ``{"token_type": "Bearer", "access_token",
  "refresh_token", "expires_in"}``, ``400`` for another key;
- every other call wants ``Authorization: Bearer <access_token>`` (``401`` without);
- ``POST /videos`` ``{"title"}`` (required): ``201``, the video (``videoId``, ``title``,
  ``assets.player``, ...);
- ``POST /videos/{videoId}/source``, ``multipart/form-data`` with the file in ``file``, and,
  for a file sent in chunks, ``Content-Range: bytes FROM-TO/TOTAL``: chunks in order, each
  but the last at least ``min_chunk`` bytes (api.video's is 5 MiB); ``201`` and the video
  after each; the video's source is the whole file once the last chunk is in;
- ``GET /videos/{videoId}``; ``DELETE /videos/{videoId}``: ``204``; ``404`` for an unknown id.
Errors are api.video's problem JSON (``type``, ``title``, ``status``). What it was sent is in
``videos`` (and ``requests``), for the tests to read.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

MIN_CHUNK = 5 * 1024 * 1024
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass
class StoredVideo:
    video_id: str
    title: str
    #: the bytes received so far, and each chunk's (from, to, total)
    data: bytearray = field(default_factory=bytearray)
    chunks: list[tuple[int, int, int]] = field(default_factory=list)
    complete: bool = False


def _problem(status: int, title: str) -> web.Response:
    return web.json_response(
        {"type": "https://docs.api.video/reference/errors", "title": title, "status": status},
        status=status,
    )


class ApiVideoStandIn:
    """The stand-in's state and its aiohttp application (``app``)."""

    def __init__(self, api_key: str, *, min_chunk: int = MIN_CHUNK) -> None:
        self.api_key = api_key
        self.min_chunk = min_chunk
        self.videos: dict[str, StoredVideo] = {}
        self.requests: list[tuple[str, str]] = []
        self._tokens: set[str] = set()
        self.app = web.Application(middlewares=[self._authorize], client_max_size=1 << 30)
        self.app.router.add_post("/auth/api-key", self._auth)
        self.app.router.add_post("/videos", self._create)
        self.app.router.add_post("/videos/{video_id}/source", self._upload)
        self.app.router.add_get("/videos/{video_id}", self._get)
        self.app.router.add_delete("/videos/{video_id}", self._delete)

    @web.middleware
    async def _authorize(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path != "/auth/api-key":
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme != "Bearer" or token not in self._tokens:
                return _problem(401, "Unauthorized request")
        response: web.StreamResponse = await handler(request)
        return response

    async def _auth(self, request: web.Request) -> web.Response:
        body = await request.json()
        if body.get("apiKey") != self.api_key:
            return _problem(400, "The API key is invalid")
        token = secrets.token_urlsafe(24)
        self._tokens.add(token)
        return web.json_response(
            {
                "token_type": "Bearer",
                "access_token": token,
                "refresh_token": secrets.token_urlsafe(24),
                "expires_in": 3600,
            }
        )

    async def _create(self, request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body.get("title"), str) or not body["title"]:
            return _problem(400, "This field is required: title")
        video = StoredVideo("vi" + secrets.token_hex(11), body["title"])
        self.videos[video.video_id] = video
        return web.json_response(self._describe(request, video), status=201)

    async def _upload(self, request: web.Request) -> web.Response:
        video = self.videos.get(request.match_info["video_id"])
        if video is None:
            return _problem(404, "The requested resource was not found")
        if video.complete:
            return _problem(400, "The video already has a source")
        form = await request.post()
        upload = form.get("file")
        if not isinstance(upload, web.FileField):
            return _problem(400, "This field is required: file")
        data = upload.file.read()
        header = request.headers.get("Content-Range")
        if header is None:
            start, end, total = 0, len(data) - 1, len(data)
        elif (match := _RANGE.fullmatch(header)) is None:
            return _problem(400, "Content-Range must be bytes FROM-TO/TOTAL")
        else:
            start, end, total = (int(n) for n in match.groups())
        last = end + 1 == total
        if start != len(video.data) or end - start + 1 != len(data) or end >= total:
            return _problem(400, "The chunk does not follow the bytes received so far")
        if not last and len(data) < self.min_chunk:
            return _problem(400, f"A chunk but the last must be at least {self.min_chunk} bytes")
        video.data += data
        video.chunks.append((start, end, total))
        video.complete = last
        return web.json_response(self._describe(request, video), status=201)

    async def _get(self, request: web.Request) -> web.Response:
        video = self.videos.get(request.match_info["video_id"])
        if video is None:
            return _problem(404, "The requested resource was not found")
        return web.json_response(self._describe(request, video))

    async def _delete(self, request: web.Request) -> web.Response:
        if self.videos.pop(request.match_info["video_id"], None) is None:
            return _problem(404, "The requested resource was not found")
        return web.Response(status=204)

    def _describe(self, request: web.Request, video: StoredVideo) -> dict[str, Any]:
        base = f"{request.scheme}://{request.host}"
        return {
            "videoId": video.video_id,
            "title": video.title,
            "source": {"uri": f"/videos/{video.video_id}/source"} if video.complete else {},
            "assets": {
                "player": f"{base}/vod/{video.video_id}",
                "hls": f"{base}/vod/{video.video_id}/hls/manifest.m3u8",
                "mp4": f"{base}/vod/{video.video_id}/mp4/source.mp4",
            },
        }
