"""The gateway's behaviour, independent of HTTP: which versions are loaded, who answers,
what is measured, and the admin operations of a rollout. `asgi.py` puts HTTP around it."""

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, cast

import numpy as np

from chassis.cascade.spec import CascadeSpec
from chassis.errors import (
    ChassisError,
    FeedbackRefused,
    IntegrityError,
    NotServable,
    RecordError,
    RegistryError,
    RegistryUnreachable,
    RequestError,
    StateError,
    TextInputError,
)
from chassis.failpoints import failpoint
from chassis.registry import Registry
from chassis.registry.tags import (
    TAG_ACCURACY_GATE,
    TAG_CASCADE,
    TAG_ONNX_SHA256,
    TAG_TEXT_INPUT,
    TAG_TOKENIZER_SHA256,
)
from chassis.rollout import lease
from chassis.rollout.orphans import end_orphan, this_process
from chassis.rollout.record import RolloutRecord
from chassis.runtime import answers_depend_on_batch, create_session, direct_runner
from chassis.serving import verified_cache
from chassis.serving.batching import MicroBatcher
from chassis.serving.cascade import (
    CascadeMetrics,
    CascadeTier,
    Upstream,
    cascade_logits,
    recalled_cascade,
    remember_cascade,
    same_reading,
)
from chassis.serving.feedback import (
    Found,
    Joined,
    LiveScores,
    PredictionWindow,
    check_label,
    outcome_of,
    replica_tag,
)
from chassis.serving.gateway_log import (
    CHAMPION_NOT_FOLLOWED,
    CHAMPION_REFUSED,
    GATEWAY_FATAL,
    GATEWAY_READINESS,
    GATEWAY_WAITING,
    MODEL_DEGRADED,
    MODEL_SERVING,
    MODEL_STATE,
    ORPHAN_NOT_ENDED,
    PREDICTION_LOG_NOT_FLUSHED,
    RECORD_UNREADABLE,
    SANITIZATION_CHANGED,
    SANITIZATION_NOT_APPLIED,
    SPLIT_CHANGED,
    SPLIT_NOT_APPLIED,
    VERSION_LOAD_FAILED,
    VERSION_REFUSED,
    Value,
    event,
)
from chassis.serving.metrics import GatewayMetrics, LiveReading, Readings, RoleTally
from chassis.serving.prediction_log import PredictionLogger
from chassis.serving.readiness import (
    LOADING,
    SERVING,
    ModelReadiness,
    fatal_problem,
    is_ready,
    retry_wait,
    startup_overdue,
    waiting_reason,
)
from chassis.serving.redis_level import second_level
from chassis.serving.result_cache import CACHE_HEADERS, LOCAL, MISS, CacheSettings, ResultCache
from chassis.serving.routing import choose_version, mirror_pair
from chassis.serving.sanitizer import Sanitizer
from chassis.serving.state import Mode, RolloutState, load_state, save_state
from chassis.serving.stats import VersionStats
from chassis.serving.validation import Limits
from chassis.task import CLASSIFICATION, REGRESSION, Task, task_of
from chassis.text_input import TextEncoder

logger = logging.getLogger("chassis.gateway")

# Loading retries back off from 0.5 s to 30 s: quick when the registry blinks, gentle on a
# registry that is coming back from an outage with every replica waiting on it.
RETRY_FIRST_SECONDS = 0.5
RETRY_MAX_SECONDS = 30.0


@dataclass(frozen=True)
class GatewayConfig:
    state_dir: Path
    cache_dir: Path
    max_batch: int = 64
    max_wait_ms: float = 0.0
    limits: Limits = field(default_factory=Limits)
    intra_op_threads: int = 1
    keep_warm_seconds: float = 300.0
    # A prediction not answered by then gets a 504 and its queued work is dropped.
    request_timeout_seconds: float = 30.0
    # Builds the prediction log of a model from its feature names, task and whether it reads
    # text (its one feature column then holds the texts); None: no logging.
    prediction_log: Callable[[str, list[str], Task, bool], PredictionLogger] | None = None
    # False: a model that cannot be served (readiness.py's `missing`) stops the gateway at
    # start. True: the others serve, and it is looked for every `missing_retry_seconds`.
    allow_missing_models: bool = False
    missing_retry_seconds: float = RETRY_MAX_SECONDS
    # Not ready this long after it was created, the gateway stops (`fatal`); 0: no limit.
    startup_timeout_seconds: float = 0.0
    # Feedback joins a prediction while it is among the model's last `feedback_window_
    # requests` requests on this replica and at most `feedback_window_seconds` old; live
    # accuracy is over each version's last `live_accuracy_rows` feedback rows.
    feedback_window_requests: int = 100_000
    feedback_window_seconds: float = 3600.0
    live_accuracy_rows: int = 1000
    # The fleet's gateways (URLs, `dns:HOST:PORT`): feedback on another replica's prediction
    # is forwarded to it (chassis/serving/feedback_peers.py). Empty: refused as unknown.
    peers: tuple[str, ...] = ()
    # Another gateway (the cloud) that answers what this one does not: a model it does not
    # hold (edge mode), and a cascade's escalated rows when its full tier is not held here.
    upstream: str | None = None
    # The result cache (serving/result_cache.py): which models use it, its budget, TTL and
    # Redis; None: no cache.
    result_cache: CacheSettings | None = None


@dataclass
class ServedVersion:
    version: int
    n_features: int
    sha256: str
    batcher: MicroBatcher
    feature_names: list[str]
    stats: VersionStats = field(default_factory=VersionStats)
    # What its answers are: class labels (argmax of its logits) or predicted values.
    task: Task = CLASSIFICATION
    # Metric tallies by role, looked up once per version and role, not per request.
    tallies: dict[str, RoleTally] = field(default_factory=dict)
    # A text model's own tokenizer and length (n_features is its max_length); None: it
    # reads rows of numbers.
    encoder: TextEncoder | None = None
    # A cascade version's full tier and rule (chassis/serving/cascade.py); None: not one.
    cascade: CascadeTier | None = None


@dataclass
class ServedModel:
    name: str
    state: RolloutState
    versions: dict[int, ServedVersion] = field(default_factory=dict)
    # Its sanitization while on (registry tag chassis.sanitization); None: off.
    sanitizer: Sanitizer | None = None

    @property
    def n_features(self) -> int:
        return self.versions[self.state.stable_version].n_features

    @property
    def reads_text(self) -> bool:
        """Whether requests carry texts (the stable version is a text model's)."""
        return self.versions[self.state.stable_version].encoder is not None


# What a request carries: rows of numbers (float32), or a text model's texts, which each
# version tokenizes with its own tokenizer once it is the one that reads them.
Request = np.ndarray | list[str]


class Prediction(NamedTuple):  # built per request: 2/3 of a frozen dataclass's cost
    version: int
    predictions: list[int] | list[float]  # class labels, or a regressor's values
    # The request's number in the model's feedback window: its rows' ids (one per row,
    # PredictionWindow.ids / ids_json, chassis/serving/feedback.py).
    number: int
    # Where a cached model's answer came from (x-chassis-cache: local, redis, miss,
    # coalesced); empty for a model without the result cache.
    cache: bytes = b""


# An item judged good: where its prediction is kept (to mark it) and what it joined.
Judged = tuple[Found, Joined]


class Gateway:
    def __init__(self, registry: Registry, config: GatewayConfig, model_names: list[str]) -> None:
        self.registry = registry
        self.config = config
        self.model_names = model_names
        self.models: dict[str, ServedModel] = {}
        self.metrics = GatewayMetrics()
        self.metrics.readings = self._readings
        # Each named model's state (readiness.py): one model's never decides another's.
        self.readiness: dict[str, ModelReadiness] = {}
        self.ready_said = False  # the gateway's readiness as last logged
        for name in model_names:
            self._set_readiness(name, LOADING)
        self.tried_once = False  # every model has been tried (`first_pass`)
        self.created = time.monotonic()  # the startup timeout counts from here
        # The one-line reason a gateway that must serve every model stops (None: it runs).
        self.fatal: str | None = None
        self.retry_note = ""  # when the models not served are tried again
        self.draining = False  # set on SIGTERM: /readyz says 503, requests still answered
        self.rng = random.Random()  # traffic splitting, not security
        self.background: set[asyncio.Task[None]] = set()
        self.logs: dict[str, PredictionLogger] = {}
        # Ground truth (serving/feedback.py): this replica's part of every prediction id,
        # each model's recent predictions, each version's live scores, what a version's
        # labels are (task, classes) and the accuracy gate its gate report set.
        self.replica = replica_tag()
        self.windows: dict[str, PredictionWindow] = {}
        self.live: dict[tuple[str, int], LiveScores] = {}
        self.label_spaces: dict[tuple[str, int], tuple[Task, int | None]] = {}
        self.accuracy_gates: dict[tuple[str, int], float] = {}
        # Models whose rollout record could not be read, and why (shown on /admin/status).
        self.record_errors: dict[str, str] = {}
        # Models served from verified local copies while the registry is unreachable.
        self.degraded: dict[str, str] = {}
        # (model, version) -> (digest tag, why) of versions whose bytes were refused.
        self.refused: dict[tuple[str, int], tuple[str | None, str]] = {}
        self.stopping = threading.Event()  # set at shutdown: start() stops retrying
        # The event loop serving requests (set by the ASGI app at startup).
        self.loop: asyncio.AbstractEventLoop | None = None
        # What a repeated problem last logged, by subject (`_say_once`): a poll that meets
        # the same refusal every few seconds says it once, and again when it changes.
        self.said: dict[str, str] = {}
        # One lock per (model, version) being loaded (`_loading`), made under the guard.
        self.loading_guard = threading.Lock()
        self.loading_locks: dict[tuple[str, int], threading.Lock] = {}
        # Sync passes (the registry poll, an admin sync) apply one record at a time.
        self.syncing = threading.Lock()
        # Answers kept by (model, routed version, input bytes), for the models that ask.
        self.result_cache: ResultCache | None = None
        if config.result_cache is not None:
            settings = config.result_cache
            second = second_level(settings.redis_url, settings.redis_timeout_seconds)
            self.result_cache = ResultCache(settings, second)
            self.metrics.registry.register(self.result_cache)
        self.cascade_metrics = CascadeMetrics(self.metrics.registry)
        self.upstream = (
            None
            if config.upstream is None
            else Upstream(config.upstream, config.request_timeout_seconds)
        )

    # ---- loading ---------------------------------------------------------------------

    def load_version(self, name: str, version: int) -> ServedVersion:
        """Download, verify sha256, open an ONNX Runtime session. Raises on any mismatch.
        Only `_verified` calls it (after the gate check); the verified copy is kept for a
        restart while the registry is unreachable."""
        directory = verified_cache.version_dir(self.config.cache_dir, name, version)
        files = self.registry.fetch_version(name, version, directory)
        sha256 = files.tags[TAG_ONNX_SHA256]
        task = task_of(files.tags)
        encoder = files.text_encoder()
        served = self._open(name, version, files.onnx_path, sha256, None, task, encoder)
        text = None
        if encoder is not None and files.tokenizer_path is not None:
            # Kept with the ONNX bytes, digest and settings, so a restart while the registry
            # is unreachable tokenizes exactly as this version did.
            text = verified_cache.CachedText(
                files.tokenizer_path, files.tags[TAG_TOKENIZER_SHA256], files.tags[TAG_TEXT_INPUT]
            )
        verified_cache.remember(
            directory, files.onnx_path, sha256, served.feature_names, task, text
        )
        return served

    def _open(
        self,
        name: str,
        version: int,
        onnx_path: Path,
        sha256: str,
        feature_names: list[str] | None,
        task: Task,
        encoder: TextEncoder | None = None,
    ) -> ServedVersion:
        """A verified ONNX file as a served version (feature names from the registry when
        not given); with `encoder`, a text model's, whose input is its token ids."""
        session = create_session(onnx_path, self.config.intra_op_threads)
        input_name = cast(str, session.get_inputs()[0].name)
        width = cast(object, session.get_inputs()[0].shape[1])  # an int, or a symbolic name
        if encoder is None:
            n_features = int(cast(int, width))
            warm_up = np.zeros((1, n_features), dtype=np.float32)
        else:
            n_features = encoder.max_length
            if isinstance(width, int) and width != n_features:
                raise NotServable(
                    f"{name} v{version} reads {width} token ids per text, but its text input "
                    f"settings say max_length {n_features}"
                )
            warm_up = np.full((1, n_features), encoder.pad_id, dtype=np.int64)

        # The output named once (given None, session.run lists them on every call), and
        # none of the wrapper's per-call checks (runtime.direct_runner).
        call = direct_runner(session, input_name)

        # Dynamic int8 scales each call's activations over all its rows: a request's answer
        # would depend on the requests batched with it. Such a version takes one request a
        # call (no batching across requests) and runs its rows one at a time, as the gates
        # judged it. (Batching requests and then running rows one by one made every request
        # of a batch wait for the whole batch: a canary's p99 rose to 650 ms.)
        per_row = answers_depend_on_batch(onnx_path)
        run = row_by_row(call) if per_row else call

        # ONNX Runtime's first call sets up its buffers and is many times slower than the
        # next ones: made here, it cannot make the batcher take a fast model for a slow one.
        # A model that fails it fails its requests as before, with their 500s.
        classes = None
        with contextlib.suppress(Exception):
            classes = int(run(warm_up).shape[1])
        # What feedback on this version's answers may say: a class below its output width.
        self.label_spaces[(name, version)] = (task, None if task == REGRESSION else classes)

        series = self.metrics.version(name, str(version))
        if feature_names is None:
            # A compressed version inherits the column names of the version it was made from.
            feature_names = self.registry.feature_columns(name, version) or [
                f"feature_{i}" for i in range(n_features)
            ]
        return ServedVersion(
            version=version,
            n_features=n_features,
            sha256=sha256,
            # A batch's CPU per row is the model's cost (queued batches: slow models, or
            # load). Inline calls are recorded only when mirrored (see _mirror).
            batcher=MicroBatcher(
                run,
                1 if per_row else self.config.max_batch,
                self.config.max_wait_ms,
                series.record_cpu,
                series.record_wait,
            ),
            feature_names=feature_names,
            task=task,
            encoder=encoder,
        )

    def _verified(self, model: ServedModel, version: int) -> ServedVersion:
        """`version`, ready to take traffic: its gate report says passed and the bytes
        served are the ones the registry's digest names. The one way a version reaches
        traffic (restart, record, admin rollout, a champion moved by hand), so a version
        held in memory is checked again too: its gate may have failed since, or its digest
        changed. Raises ChassisError naming the version and the problem."""
        refusal = f"refused:{model.name}:{version}"
        try:
            tags = self.registry.require_passed_gates(model.name, version)
        except RegistryUnreachable:
            raise
        except RegistryError as error:  # the registry answered: no passed, signed verdict
            self._say_once(
                refusal,
                logging.ERROR,
                VERSION_REFUSED,
                model=model.name,
                version=version,
                check="gates",
                expected_sha256=None,
                found_sha256=None,
                error=str(error),
            )
            self.metrics.count_load_failure(model.name, version, "gates")
            raise NotServable(str(error)) from error
        digest = tags.get(TAG_ONNX_SHA256)
        self._note_accuracy_gate(model.name, version, tags)
        held = model.versions.get(version)
        if held is not None and held.sha256 == digest:
            self.said.pop(refusal, None)
            return held
        # A version refused for its bytes is not downloaded again on every poll while its
        # registry entry is unchanged: the refusal stands until its digest tag changes.
        refused = self.refused.get((model.name, version))
        if refused is not None and refused[0] == digest:
            raise IntegrityError(refused[1])
        # Two threads may want the same version at once (the registry poll and an admin
        # sync): the second waits, then finds the copy the first verified, instead of
        # downloading into the same directory while the first reads it.
        with self._loading(model.name, version):
            served = self._recalled_or_loaded(model, version, tags, digest, refusal)
        if TAG_CASCADE in tags:
            served.cascade = self._cascade_tier(model, served, tags[TAG_CASCADE])
            directory = verified_cache.version_dir(self.config.cache_dir, model.name, version)
            remember_cascade(directory, tags[TAG_CASCADE])
        return served

    def _cascade_tier(self, model: ServedModel, served: ServedVersion, tag: str) -> CascadeTier:
        """A cascade version's full tier: the upstream gateway when one is configured (the
        edge holds the small models, the cloud the full ones), else the full version loaded
        here through the same `_verified` checks as any version, reading a request as the
        cascade does (a text classifier's token ids go to it as they are); neither: not
        servable."""
        version = served.version
        spec = CascadeSpec.from_json(tag)
        if self.upstream is not None:
            return CascadeTier(spec, None, self.upstream, self.upstream.url)
        full = spec.full_version
        try:
            loaded = self._verified(model, full)
        except RegistryUnreachable:
            raise
        except ChassisError as error:
            raise NotServable(
                f"{model.name} v{version} is a cascade whose full tier v{full} cannot be "
                f"served here ({error}), and no upstream gateway is configured"
            ) from error
        if loaded.cascade is not None:
            raise NotServable(f"{model.name} v{version}'s full tier v{full} is a cascade itself")
        if not same_reading(served.encoder, loaded.encoder):
            raise NotServable(
                f"{model.name} v{version}'s full tier v{full} reads its input through another "
                "tokenizer or max_length than the cascade"
            )
        return CascadeTier(spec, loaded.batcher, None, f"v{full} here")

    def _note_accuracy_gate(self, name: str, version: int, tags: dict[str, str]) -> None:
        """The live-accuracy floor the version's gates set (chassis_accuracy_gate_ratio), read
        at every verification, so a version gated again shows its new floor."""
        try:
            self.accuracy_gates[(name, version)] = float(tags[TAG_ACCURACY_GATE])
        except (KeyError, ValueError):
            self.accuracy_gates.pop((name, version), None)  # gated before the tag existed

    def _loading(self, name: str, version: int) -> threading.Lock:
        with self.loading_guard:
            return self.loading_locks.setdefault((name, version), threading.Lock())

    def _recalled_or_loaded(
        self,
        model: ServedModel,
        version: int,
        tags: dict[str, str],
        digest: str | None,
        refusal: str,
    ) -> ServedVersion:
        local = self._recall(model.name, version, tags)
        if local is not None:
            self.said.pop(refusal, None)
            return local
        try:
            served = self.load_version(model.name, version)  # fetch_version checks the digest
        except IntegrityError as error:
            self.refused[(model.name, version)] = (digest, str(error))
            self.metrics.count_load_failure(model.name, version, "sha256")
            self._say_once(
                refusal,
                logging.ERROR,
                VERSION_REFUSED,
                model=model.name,
                version=version,
                check="sha256",
                expected_sha256=error.expected or digest,
                found_sha256=error.actual,
                error=str(error),
            )
            raise
        except Exception as error:
            # Not a verdict on the version (the artifact store did not answer, a file the
            # runtime cannot open): said each time, as each try may end differently.
            event(
                logger,
                logging.WARNING,
                VERSION_LOAD_FAILED,
                model=model.name,
                version=version,
                error=f"{type(error).__name__}: {error}",
            )
            self.metrics.count_load_failure(model.name, version, "load")
            raise
        self.said.pop(refusal, None)
        return served

    def _recall(self, name: str, version: int, tags: dict[str, str]) -> ServedVersion | None:
        """The local copy of `version` when its bytes (and a text model's tokenizer) hash to
        the registry's signed digests: as safe as a download (the same check), faster, and
        possible while the artifact store is down. None: no such copy (it is then
        downloaded)."""
        try:
            cached = verified_cache.recall(self.config.cache_dir, name, version)
        except IntegrityError as error:
            event(
                logger,
                logging.WARNING,
                VERSION_REFUSED,
                model=name,
                version=version,
                check="local_copy",
                expected_sha256=error.expected,
                found_sha256=error.actual,
                error=f"{error}; downloading it again",
            )
            return None
        if cached is None or cached.sha256 != tags.get(TAG_ONNX_SHA256):
            return None
        text = cached.text
        kept = None if text is None else (text.tokenizer_sha256, text.settings)
        registered = (
            None
            if TAG_TEXT_INPUT not in tags
            else (tags.get(TAG_TOKENIZER_SHA256), tags[TAG_TEXT_INPUT])
        )
        if kept != registered:
            return None  # a copy kept before text inputs were, or another tokenizer
        return self._open_cached(name, version, cached)

    def _open_cached(
        self, name: str, version: int, cached: verified_cache.CachedVersion
    ) -> ServedVersion:
        text = cached.text
        encoder = (
            None if text is None else TextEncoder.from_settings(text.tokenizer_path, text.settings)
        )
        return self._open(
            name,
            version,
            cached.onnx_path,
            cached.sha256,
            cached.feature_names,
            cached.task,
            encoder,
        )

    @property
    def ready(self) -> bool:
        """Whether the models serve as readiness.py's rules want (draining aside)."""
        return is_ready(self.readiness, self.config.allow_missing_models)

    def not_ready_reason(self) -> str:
        """Each model that does not serve and why, with when it is tried next ("" if none)."""
        waiting = waiting_reason(self.readiness)
        return f"{waiting} ({self.retry_note})" if waiting and self.retry_note else waiting

    def first_pass(self) -> None:
        """Try every model once, at its last committed state or at its champion; done once.
        Unless missing models are allowed, raises NotServable naming every model that
        cannot be served (not registered, no champion, refused), or every model not served
        once the startup timeout has passed: `chassis serve` exits with it before it
        listens. A model the registry or artifact store did not answer for is no such error
        (within the timeout): `keep_loading` retries it."""
        if not self.tried_once:
            self._try_pending()
            self.tried_once = True
        self.fatal = self._stop_reason()
        if self.fatal is not None:
            raise NotServable(self.fatal)

    def keep_loading(self) -> None:
        """Retry the models not served until each is: with backoff (0.5 s to 30 s) while
        the registry or the artifact store does not answer (a pod restarted during an
        outage), every `missing_retry_seconds` for a missing model when missing models are
        allowed (it serves once registered and promoted, without a restart). Each model
        serves as soon as it is loaded. A model found missing here, where every model must
        serve, or the startup timeout passing before the gateway is ready, sets `fatal` and
        ends the loop (the server stops on it)."""
        delay = RETRY_FIRST_SECONDS
        logged = ""
        timeout = self.config.startup_timeout_seconds
        while self._pending():
            wait = retry_wait(self.readiness, delay, self.config.missing_retry_seconds)
            if timeout > 0 and not self.ready:  # the last try falls on the timeout
                wait = max(0.0, min(wait, self.created + timeout - time.monotonic()))
            self.retry_note = f"retrying in {wait:g} s"
            if wait == delay or waiting_reason(self.readiness) != logged:
                # Each backoff step is said; a missing model's steady look, once per reason.
                logged = waiting_reason(self.readiness)
                event(
                    logger,
                    logging.WARNING,
                    GATEWAY_WAITING,
                    reason=waiting_reason(self.readiness),
                    retry_seconds=round(wait, 3),
                )
            if self.stopping.wait(wait):
                return
            if wait == delay:
                delay = min(delay * 2, RETRY_MAX_SECONDS)
            self._try_pending()
            self.fatal = self._stop_reason()
            if self.fatal is not None:
                event(logger, logging.ERROR, GATEWAY_FATAL, error=self.fatal)
                return
        self.retry_note = ""

    def start(self) -> None:
        """`first_pass`, then `keep_loading`: the whole of loading, for a caller that runs
        it on a thread of its own (a refusal is then in `fatal` and on /readyz)."""
        try:
            self.first_pass()
        except NotServable as error:
            event(logger, logging.ERROR, GATEWAY_FATAL, error=str(error))
            return
        self.keep_loading()

    def _stop_reason(self) -> str | None:
        """Why the gateway must stop now: a missing model where every model must serve, or
        not ready within the startup timeout; None: it goes on."""
        allow = self.config.allow_missing_models
        return fatal_problem(self.readiness, allow) or startup_overdue(
            self.readiness,
            allow,
            time.monotonic() - self.created,
            self.config.startup_timeout_seconds,
        )

    def _pending(self) -> list[str]:
        return [name for name in self.model_names if self.readiness[name].state != "serving"]

    def _try_pending(self) -> None:
        for name in self._pending():
            try:
                failpoint("gateway.load")  # a replica that cannot load what it must serve
                self._serve(name, self._restore(name))
            except Exception as error:
                self._set_readiness(name, ModelReadiness.failed(error))
            else:
                self._set_readiness(name, SERVING)

    def _set_readiness(self, name: str, readiness: ModelReadiness) -> None:
        previous = self.readiness.get(name)
        self.readiness[name] = readiness
        self.metrics.set_model_state(name, readiness.state)
        # A model that starts serving says so with its versions (`_serve`); a model that
        # does not, and each new reason why not, here.
        if previous is not None and previous != readiness and readiness.state != "serving":
            event(
                logger,
                logging.WARNING,
                MODEL_STATE,
                model=name,
                state=readiness.state,
                previous=previous.state,
                reason=readiness.reason,
            )
        ready = self.ready
        if ready != self.ready_said:
            self.ready_said = ready
            event(
                logger,
                logging.INFO if ready else logging.WARNING,
                GATEWAY_READINESS,
                ready=ready,
                reason="ready" if ready else self.not_ready_reason() or "loading models",
            )

    def _serve(self, name: str, model: ServedModel) -> None:
        if self.config.prediction_log is not None and name not in self.logs:
            stable = model.versions[model.state.stable_version]
            log = self.config.prediction_log(
                name, stable.feature_names, stable.task, stable.encoder is not None
            )
            log.replica = self.replica  # its id column names this replica's predictions
            self.logs[name] = log
        if name not in self.windows:
            config = self.config
            self.windows[name] = PredictionWindow(
                self.replica, config.feedback_window_requests, config.feedback_window_seconds
            )
        if name not in self.degraded:  # a restart keeps the fleet's sanitization
            self.follow_sanitization(name, model)
        self.models[name] = model  # one assignment: its requests are answered from now on
        # The in-flight series exists from here, 0 before the first request (an autoscaler's
        # query then reads 0, not no data).
        self.metrics.in_flight.setdefault(name, 0)
        event(
            logger,
            logging.INFO,
            MODEL_SERVING,
            **split_fields(model),
            degraded=self.degraded.get(name),
        )

    def _say_once(self, subject: str, level: int, name: str, **fields: Value) -> None:
        """Log the event unless `subject` last said the same (a poll meeting the same
        problem every few seconds); `self.said.pop(subject)` when it is over."""
        said = repr(sorted(fields.items()))
        if self.said.get(subject) != said:
            self.said[subject] = said
            event(logger, level, name, **fields)

    def _changed(self, model: ServedModel, previous: RolloutState, cause: str) -> None:
        """Log a split change of `model` (its state is the new one), if anything changed."""
        if split_key(previous) == split_key(model.state):
            return
        event(
            logger,
            logging.INFO,
            SPLIT_CHANGED,
            **split_fields(model),
            cause=cause,
            previous_generation=previous.generation,
            previous_mode=previous.mode,
            previous_stable=previous.stable_version,
            previous_candidate=previous.candidate_version,
        )

    def _restore(self, name: str) -> ServedModel:
        """What to serve at start: from the registry, or, while the registry is unreachable,
        the verified local copies of the split this gateway last committed."""
        try:
            return self._restore_from_registry(name)
        except RegistryUnreachable as error:
            try:
                model = self._restore_from_cache(name)
            except IntegrityError as refusal:
                # A local copy refused is no verdict on the model: the registry, once back,
                # has the verified bytes. Still a matter of waiting, not a missing model.
                raise RegistryUnreachable(f"{error}; {refusal}") from refusal
            if model is None:
                raise
            self.degraded[name] = (
                f"{error}; serving the verified local copy of v{model.state.stable_version}"
            )
            event(logger, logging.WARNING, MODEL_DEGRADED, model=name, reason=self.degraded[name])
            return model

    def _restore_from_registry(self, name: str) -> ServedModel:
        """The committed rollout record if there is one (every replica serves the same), else
        the last state this process committed locally, else the champion alone."""
        if not self.registry.model_exists(name):
            raise NotServable(
                f"no registered model named {name!r} (check the name and CHASSIS_TRACKING_URI, "
                "or register and promote a version)"
            )
        record = self._read_record(name)
        if record is not None:
            model = ServedModel(name, RolloutState(model=name, stable_version=0))
            try:
                self._apply_record(model, record)
                return model
            except RegistryUnreachable:
                raise
            except ChassisError as error:
                # e.g. a candidate that no longer verifies: serve the champion alone.
                event(
                    logger,
                    logging.WARNING,
                    SPLIT_NOT_APPLIED,
                    model=name,
                    source="record",
                    generation=record.generation,
                    error=str(error),
                )
        state = load_state(self.config.state_dir, name)
        if state is not None:
            model = ServedModel(name, state)
            try:
                model.versions[state.stable_version] = self._verified(model, state.stable_version)
            except RegistryUnreachable:
                raise
            except ChassisError as error:
                event(
                    logger,
                    logging.WARNING,
                    SPLIT_NOT_APPLIED,
                    model=name,
                    source="saved_state",
                    generation=state.generation,
                    error=str(error),
                )
            else:
                if state.candidate_version is not None:
                    try:
                        model.versions[state.candidate_version] = self._verified(
                            model, state.candidate_version
                        )
                    except ChassisError as error:
                        # Never come back to an unvalidated candidate: the stable one only.
                        event(
                            logger,
                            logging.WARNING,
                            SPLIT_NOT_APPLIED,
                            model=name,
                            source="saved_state",
                            generation=state.generation,
                            error=str(error),
                        )
                        model.state = RolloutState(model=name, stable_version=state.stable_version)
                        save_state(self.config.state_dir, model.state)
                return model
        return self._serve_champion(name)

    def _serve_champion(self, name: str) -> ServedModel:
        """The champion alone; if it fails verification, the `previous` version when that
        verifies (said on /readyz and in chassis_champion_mismatch), else the refusal."""
        champion = self.registry.version_for_alias(name, "champion")
        if champion is None:
            raise NotServable(
                f"{name!r} has no champion alias; promote a version first "
                f"(`chassis promote --model {name} --version N`)"
            )
        model = ServedModel(name, RolloutState(model=name, stable_version=champion))
        try:
            model.versions[champion] = self._verified(model, champion)
            # Committed locally: a restart during a registry outage serves this copy.
            save_state(self.config.state_dir, model.state)
            return model
        except RegistryUnreachable:
            raise
        except ChassisError as refusal:
            previous = self.registry.version_for_alias(name, "previous")
            if previous is None:
                raise
            try:
                model.versions[previous] = self._verified(model, previous)
            except ChassisError:
                raise refusal from None
            model.state = RolloutState(model=name, stable_version=previous)
            save_state(self.config.state_dir, model.state)
            self.metrics.set_champion_mismatch(name, (champion, previous, str(refusal)))
            event(
                logger,
                logging.ERROR,
                CHAMPION_REFUSED,
                model=name,
                champion=champion,
                serving=previous,
                error=str(refusal),
            )
            return model

    def _restore_from_cache(self, name: str) -> ServedModel | None:
        """The split this gateway last committed, from verified local copies only (a
        candidate only if it was verified too); None when the stable copy is missing."""
        state = load_state(self.config.state_dir, name)
        if state is None:
            return None
        model = ServedModel(name, RolloutState(model=name, stable_version=state.stable_version))
        wanted = [state.stable_version]
        if state.candidate_version is not None:
            wanted.append(state.candidate_version)
        for version in wanted:
            cached = verified_cache.recall(self.config.cache_dir, name, version)
            if cached is None:
                if version == state.stable_version:
                    return None
                continue
            served = self._open_cached(name, version, cached)
            if not self._cascade_from_cache(name, version, served):
                if version == state.stable_version:
                    return None
                continue
            model.versions[version] = served
        if state.candidate_version in model.versions and not state.orphaned(time.time()):
            model.state = state
        return model

    def _cascade_from_cache(self, name: str, version: int, served: ServedVersion) -> bool:
        """A cascade version restored from its verified copy gets its full tier too: the
        upstream, else the full tier's own verified copy. False: it is a cascade whose full
        tier is neither (not restored: never served as its small tier alone)."""
        spec = recalled_cascade(verified_cache.version_dir(self.config.cache_dir, name, version))
        if spec is None:
            return True
        if self.upstream is not None:
            served.cascade = CascadeTier(spec, None, self.upstream, self.upstream.url)
            return True
        try:
            cached = verified_cache.recall(self.config.cache_dir, name, spec.full_version)
        except IntegrityError:
            return False
        if cached is None:
            return False
        full = self._open_cached(name, spec.full_version, cached)
        if not same_reading(served.encoder, full.encoder):
            return False
        served.cascade = CascadeTier(spec, full.batcher, None, f"v{spec.full_version} here")
        return True

    def close(self) -> None:
        """Write every prediction log's remaining rows (at shutdown, after the last request)."""
        self.stopping.set()
        for name, log in self.logs.items():
            try:
                log.close()
            except Exception as error:  # one model's log must not keep the others unwritten
                event(
                    logger,
                    logging.WARNING,
                    PREDICTION_LOG_NOT_FLUSHED,
                    model=name,
                    error=f"{type(error).__name__}: {error}",
                )

    def _readings(self) -> Readings:
        """What /metrics reads from the gateway when scraped (see metrics.Readings)."""
        readings = Readings(ready=self.ready and not self.draining)
        for name, model in self.models.items():
            state = model.state
            readings.generations[name] = state.generation
            for version, role in (
                (state.stable_version, "stable"),
                (state.candidate_version, "candidate"),
                (state.warm_version, "warm"),
            ):
                if version is not None and version in model.versions:
                    readings.served.append((name, version, role))
        for name, log in self.logs.items():
            readings.log_dropped_rows[name] = log.dropped_rows
        for (name, version), scores in self.live.items():
            task, _ = self.label_spaces.get((name, version), (CLASSIFICATION, None))
            readings.live.append(LiveReading(name, version, task, scores.rows, scores.mean))
        # The versions held now (a retired candidate's gate would compare nothing).
        readings.accuracy_gates = {
            (name, version): gate
            for (name, version), gate in self.accuracy_gates.items()
            if name in self.models and version in self.models[name].versions
        }
        return readings

    def model(self, name: str) -> ServedModel:
        model = self.models.get(name)
        if model is None:
            raise self.not_served(name)
        return model

    def not_served(self, name: str) -> RequestError:
        """Why `name` is not answered: not one of this gateway's models (404), or not
        loaded yet (503, with the reason)."""
        readiness = self.readiness.get(name)
        if readiness is not None:
            note = f" ({self.retry_note})" if self.retry_note else ""
            return RequestError(503, f"{name!r} is not loaded yet: {readiness.reason}{note}")
        return RequestError(404, f"no model named {name!r} is served here")

    # ---- serving -----------------------------------------------------------------------

    async def predict(self, name: str, request: Request, key: str | None) -> Prediction:
        model = self.model(name)
        # Counted here, in this coroutine (another one a request would cost ~0.3 us).
        in_flight = self.metrics.in_flight
        in_flight[name] = in_flight.get(name, 0) + 1
        try:
            # What the versions run (and a mirror compares); the log keeps `request` as sent.
            sanitizer = model.sanitizer
            run = request if sanitizer is None else self._sanitized(sanitizer, request)
            state = model.state
            version = choose_version(state, key, self.rng)
            served = model.versions[version]
            role = "stable" if version == state.stable_version else "candidate"
            cache = self.result_cache
            if cache is not None and name in cache.models:
                return await self._predict_cached(model, cache, served, role, request, run)
            rows = (
                run
                if served.encoder is None and type(run) is np.ndarray
                else self._model_input(model, served, run)
            )
            # A fast model with nothing queued answers in this call; only the others (and
            # a cascade) await. `_run`, unrolled: no coroutine for an inline answer.
            answered = self._answer_now(model, served, rows, role)
            if answered is None:
                answered = await self._answer_later(model, served, rows, role, run)
            answers, predictions = answered
            number = self.windows[name].add(version, predictions)
            log = self.logs.get(name)
            if log is not None:
                # A text model's rows: the texts themselves. The ids: the request's number.
                log.record(version, request, answers, number)
            # Between rollouts (stable, nothing warm) the hot path skips the mirror decision.
            if state.mode != "stable" or state.warm_version is not None:
                self._start_mirror(model, state, run)
            return Prediction(version, predictions, number)
        finally:
            in_flight[name] -= 1

    async def _predict_cached(
        self,
        model: ServedModel,
        cache: ResultCache,
        served: ServedVersion,
        role: str,
        request: Request,
        run: Request,
    ) -> Prediction:
        """`predict` for a model with the result cache: the answer `served` gave (or gives
        now) to the same input bytes. Keyed by what the version runs (`run`: sanitized rows,
        or texts), so a change of sanitization changes the key. A cached answer is a new
        answer to the client: it gets ids of its own in the feedback window and a row in the
        prediction log, as computed ones do; the version's request and latency counts are of
        computed answers only (the model's work, which the rollout analysis judges)."""
        name = model.name
        version = served.version
        key, answer = cache.lookup(name, version, served.sha256, run)
        outputs: np.ndarray | None = None
        if answer is not None:
            level = LOCAL
        else:
            rows = run if type(run) is np.ndarray and served.encoder is None else None
            answered = None
            if cache.inline(key):
                # A fast model with nothing queued answers in this call (no await since the
                # lookup: no identical request can start meanwhile, so no flight is needed).
                rows = self._model_input(model, served, run) if rows is None else rows
                answered = self._answer_now(model, served, rows, role)
            if answered is not None:
                outputs, predictions = answered
                answer = cache.keep(key, name, version, predictions)
                level = MISS
            else:

                async def compute() -> tuple[np.ndarray, list[int] | list[float]]:
                    ready = self._model_input(model, served, run) if rows is None else rows
                    return await self._run(model, served, ready, role, run)

                answer, level, outputs = await cache.missed(key, name, version, compute)
        predictions = answer.predictions
        number = self.windows[name].add(served.version, predictions)
        log = self.logs.get(name)
        if log is not None:
            log.record(
                served.version,
                request,
                np.asarray(predictions) if outputs is None else outputs,
                number,
            )
        state = model.state
        if state.mode != "stable" or state.warm_version is not None:
            self._start_mirror(model, state, run)  # a rollout compares cached answers too
        return Prediction(served.version, predictions, number, CACHE_HEADERS[level])

    def _start_mirror(self, model: ServedModel, state: RolloutState, run: Request) -> None:
        """Mirror the request on the split's two versions, off the request path, if the
        split's mirror share picks it."""
        pair = mirror_pair(state, self.rng)
        if pair is not None and pair[0] in model.versions and pair[1] in model.versions:
            task = asyncio.get_running_loop().create_task(
                self._mirror(model, model.versions[pair[0]], model.versions[pair[1]], run)
            )
            self.background.add(task)
            task.add_done_callback(self.background.discard)

    async def predict_preview(self, name: str, request: Request) -> Prediction:
        """Blue-green: the idle color answers, for checks before the switch."""
        model = self.model(name)
        if model.state.mode != "blue-green" or model.state.candidate_version is None:
            raise RequestError(
                409, f"{name!r} has no idle color to preview (mode {model.state.mode})"
            )
        served = model.versions[model.state.candidate_version]
        if model.sanitizer is not None:
            request = self._sanitized(model.sanitizer, request)
        rows = self._model_input(model, served, request)
        _, predictions = await self._run(model, served, rows, "preview", request)
        number = self.windows[name].add(served.version, predictions)
        return Prediction(served.version, predictions, number)

    @staticmethod
    def _sanitized(sanitizer: Sanitizer, request: Request) -> Request:
        # A text request never gets here with sanitization on (refused when followed).
        return sanitizer.apply(request) if isinstance(request, np.ndarray) else request

    def _model_input(
        self, model: ServedModel, served: ServedVersion, request: Request, count: bool = True
    ) -> np.ndarray:
        """What `served` runs on: a numeric request's rows as they are, a text request's
        texts as token ids from this version's own tokenizer. A text it cannot read (more
        tokens than it takes, unless it truncates) is the client's 422 naming the row, never
        the version's error; `count`: counted in chassis_text_refused_total."""
        encoder = served.encoder
        if encoder is None:
            if isinstance(request, np.ndarray):
                return request
            raise RequestError(
                422,
                f"{model.name} v{served.version} reads rows of {served.n_features} numbers, "
                'not texts: send {"instances": [[f1, ..., fn], ...]}',
            )
        if isinstance(request, np.ndarray):
            raise RequestError(
                422,
                f"{model.name} v{served.version} reads texts, not numbers: send "
                '{"instances": ["some text", ...]}',
            )
        try:
            return encoder.encode(request)
        except TextInputError as error:
            if count:
                self.metrics.count_text_refused(model.name, _refusal_reason(error))
            raise RequestError(
                422, f"row {error.index} {error.problem} ({model.name} v{served.version})"
            ) from None

    # Every answer of a version (live, cached, mirrored, previewed) is `_answer_now`, else
    # `_answer_later`: the one place a cascade version answers as a cascade, so no path
    # can answer with its small tier alone.

    async def _run(
        self,
        model: ServedModel,
        served: ServedVersion,
        rows: np.ndarray,
        role: str,
        request: Request | None = None,
    ) -> tuple[np.ndarray, list[int] | list[float]]:
        """Answers (array and list: labels, or a regressor's values) of `rows`, measured
        under `role`; `request`: what `rows` were made from (see `_cascade_answer`)."""
        answered = self._answer_now(model, served, rows, role)
        if answered is None:
            answered = await self._answer_later(model, served, rows, role, request)
        return answered

    def _answer_now(
        self, model: ServedModel, served: ServedVersion, rows: np.ndarray, role: str
    ) -> tuple[np.ndarray, list[int] | list[float]] | None:
        """The answer made in this call: a fast plain version with nothing queued; None:
        await `_answer_later`. A cascade never answers here (its full tier may be queued or
        upstream): the one test per request a plain version pays for cascades."""
        if served.cascade is not None:
            return None
        if rows.shape[1] != served.n_features:
            raise _width_error(served, rows)
        started = time.perf_counter()
        try:
            # A mirrored call's CPU time is recorded (`_mirror`); a live one's is not read.
            logits = served.batcher.answer_now(rows, role == "shadow")
        except Exception:
            self._count_error(model, served)
            raise
        if logits is None:
            return None
        return self._answered(model, served, role, logits, time.perf_counter() - started)

    def _answer_later(
        self,
        model: ServedModel,
        served: ServedVersion,
        rows: np.ndarray,
        role: str,
        request: Request | None = None,
    ) -> Coroutine[None, None, tuple[np.ndarray, list[int] | list[float]]]:
        """The awaited answer when `_answer_now` gave none: a cascade's tiers, else the
        version's queue. A plain function returning the coroutine: no extra one per call.
        `request`: what `rows` were made from (see `_cascade_answer`)."""
        if served.cascade is not None:
            return self._cascade_answer(model, served, rows, role, True, request)
        return self._answer_queued(model, served, rows, role)

    async def _answer_queued(
        self, model: ServedModel, served: ServedVersion, rows: np.ndarray, role: str
    ) -> tuple[np.ndarray, list[int] | list[float]]:
        if rows.shape[1] != served.n_features:
            raise _width_error(served, rows)
        started = time.perf_counter()
        try:
            # Only the queued path is timed: an inline answer is a plain call of a fast model
            # (and a timer per request would cost the hot path). A hung or swamped version's
            # clients get a 504; their queued rows are then skipped by the batcher.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.config.request_timeout_seconds
            async with asyncio.timeout_at(deadline):
                logits = await served.batcher.predict(rows, deadline)
        except TimeoutError:
            self._count_error(model, served, "504")
            raise RequestError(
                504,
                f"{model.name} v{served.version} did not answer within "
                f"{self.config.request_timeout_seconds:g} s; the request was abandoned",
            ) from None
        except Exception:
            self._count_error(model, served)
            raise
        return self._answered(model, served, role, logits, time.perf_counter() - started)

    async def _cascade_answer(
        self,
        model: ServedModel,
        served: ServedVersion,
        rows: np.ndarray,
        role: str,
        counted: bool = True,
        request: Request | None = None,
    ) -> tuple[np.ndarray, list[int] | list[float]]:
        """A cascade version's answers (chassis/serving/cascade.py), measured as one.
        `counted` False: its rows stay out of the tier counts (a mirror's warm-up call).
        `request`: what `rows` were made from; a text classifier's texts go to an upstream
        full tier (which tokenizes what it is sent), not their token ids."""
        cascade = served.cascade
        assert cascade is not None
        if rows.shape[1] != served.n_features:
            raise _width_error(served, rows)
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout_seconds
        try:
            logits = await cascade_logits(
                cascade,
                served.batcher,
                model.name,
                str(served.version),
                rows,
                deadline,
                self.cascade_metrics if counted else None,
                request if isinstance(request, list) else None,
            )
        except TimeoutError:
            self._count_error(model, served, "504")
            raise RequestError(
                504,
                f"{model.name} v{served.version} (cascade) did not answer within "
                f"{self.config.request_timeout_seconds:g} s; the request was abandoned",
            ) from None
        except RequestError as error:
            self._count_error(model, served, str(error.status))
            raise
        except Exception:
            self._count_error(model, served)
            raise
        return self._answered(model, served, role, logits, time.perf_counter() - started)

    def _answered(
        self,
        model: ServedModel,
        served: ServedVersion,
        role: str,
        logits: np.ndarray,
        seconds: float,
    ) -> tuple[np.ndarray, list[int] | list[float]]:
        served.stats.requests += 1
        served.stats.latencies_ms.append(seconds * 1000)
        tally = served.tallies.get(role)
        if tally is None:
            tally = self.metrics.tally(model.name, str(served.version), role)
            served.tallies[role] = tally
        if served.task == REGRESSION:
            values = logits[:, 0]
            answered_values: list[float] = values.tolist()
            tally.record_values(seconds, answered_values)
            return values, answered_values
        labels = logits.argmax(axis=1)
        predictions: list[int] = labels.tolist()
        tally.record(seconds, predictions, logits)
        return labels, predictions

    def _count_error(self, model: ServedModel, served: ServedVersion, status: str = "500") -> None:
        served.stats.requests += 1
        served.stats.errors += 1
        self.metrics.count_error(model.name, str(served.version), status)

    async def _mirror(
        self, model: ServedModel, judged: ServedVersion, reference: ServedVersion, request: Request
    ) -> None:
        """Run the request on both versions off the request path: their answers are compared
        (agreement, counted for `judged`) and the CPU time of each call is recorded.

        Like with like: the live answer just before was made by one of the two, whose
        caches are then warm. So the calls go X, Y, X, Y (X and Y in random order) and
        only the last two are timed: each timed call follows one untimed call of each
        version. (Timing X then Y showed two same-sized MLPs 1.7x apart in a shadow step,
        the one that had just answered live being the fast one; X, Y, X still 1.2x.)
        Warm caches matter at microseconds: a model slow enough to be queued (every batch's
        cost is recorded by the batcher) runs X, Y only, half the load its mirroring puts on
        the machine (MiniLM: ~20 ms a call).

        A cascade answers as it serves (both tiers), and is X or Y as a whole: its untimed
        call warms both of its tiers, and its timed call records the CPU of its tiers' model
        calls for this request (small tier on every row, full tier on the escalated ones),
        per row: what the cascade costs, compared with the other version's one call. Only
        when both tiers run here on the loop (`_mirrored_cascade`); a cascade escalating to
        an upstream gateway runs X, Y only and records no CPU (the upstream's is not this
        machine's), its queued tiers' batches being recorded by their batchers as for any
        version."""
        first, second = (judged, reference) if self.rng.random() < 0.5 else (reference, judged)
        answers: dict[int, np.ndarray] = {}
        timed_pair = ((first, True), (second, True))
        warm_first = _runs_on_loop(first) and _runs_on_loop(second)
        calls = ((first, False), (second, False), *timed_pair) if warm_first else timed_pair
        try:
            # Each version reads a text through its own tokenizer. One that cannot read it
            # (fewer tokens allowed) has nothing to compare; the client had its answer.
            inputs = {
                v.version: self._model_input(model, v, request, False) for v in (first, second)
            }
        except RequestError:
            return
        for served, timed in calls:
            rows = inputs[served.version]
            try:
                answered = self._answer_now(model, served, rows, "shadow")
                if answered is not None:
                    if timed:
                        series = self.metrics.version(model.name, str(served.version))
                        series.record_cpu(len(rows), served.batcher.last_cpu)
                elif timed and served.cascade is not None:
                    answered = await self._mirrored_cascade(model, served, rows, request)
                elif served.cascade is not None:
                    # The warm-up call's rows are not counted: the timed call counts them,
                    # so the rollout's escalation share rests on the rows mirrored, once.
                    answered = await self._cascade_answer(
                        model, served, rows, "shadow", False, request
                    )
                else:  # queued: its batch's cost is recorded by the batcher
                    answered = await self._answer_later(model, served, rows, "shadow", request)
            except Exception:
                return  # counted as an error of that version; the caller has its answer
            answers[served.version] = answered[0]
        if judged.task == REGRESSION and reference.task == REGRESSION:
            # Agreement of values needs the rollout policy's tolerance: the gateway counts
            # each row's relative difference; the analysis reads those counts (rollout/counts).
            relative = relative_differences(answers[judged.version], answers[reference.version])
            self.metrics.count_differences(model.name, str(judged.version), relative.tolist())
            return
        agreed = int((answers[judged.version] == answers[reference.version]).sum())
        compared = len(answers[judged.version])
        judged.stats.shadow_compared += compared
        judged.stats.shadow_agreed += agreed
        self.metrics.count_shadow(model.name, str(judged.version), agreed, compared)

    async def _mirrored_cascade(
        self, model: ServedModel, served: ServedVersion, rows: np.ndarray, request: Request
    ) -> tuple[np.ndarray, list[int] | list[float]]:
        """A cascade's timed mirrored answer, with its CPU per row recorded (see `_mirror`)
        when both tiers answer inline: each tier's `last_cpu` is then this request's, as
        nothing else runs on the loop until the answer is made."""
        cascade = served.cascade
        assert cascade is not None
        small, full = served.batcher, cascade.full
        inline = (
            full is not None
            and small.inline
            and not small.queued
            and full.inline
            and not full.queued
        )
        full_calls = full.batches if full is not None else 0
        answered = await self._cascade_answer(model, served, rows, "shadow", True, request)
        if inline and full is not None:
            escalated = full.batches != full_calls  # no row escalated: no full tier call
            cpu = small.last_cpu + (full.last_cpu if escalated else 0.0)
            self.metrics.version(model.name, str(served.version)).record_cpu(len(rows), cpu)
        return answered

    # ---- feedback ----------------------------------------------------------------------

    def feedback(self, name: str, items: list[tuple[str, object]]) -> list[Joined]:
        """Join each (id, label) with the prediction it is about and count it; all or
        nothing: the first bad item refuses the whole body (FeedbackRefused, with its
        index in a batch, counted by reason) and nothing of it is counted."""
        try:
            judged = self.judge_feedback(name, items)
        except FeedbackRefused as refused:
            self.metrics.count_feedback_refused(name, refused.reason)
            raise
        return self.commit_feedback(name, judged)

    def judge_feedback(self, name: str, items: list[tuple[str, object]]) -> list[Judged]:
        """Each item joined with its prediction, or the first bad one refused
        (FeedbackRefused, with its index in a batch); nothing is marked or counted, so a
        fleet can judge a body on every replica before any of them commits its part."""
        self.model(name)  # 404 or 503 as for a predict request
        window = self.windows[name]
        judged: list[Judged] = []
        seen: set[tuple[int, int]] = set()
        batch = len(items) > 1
        for index, (prediction_id, label) in enumerate(items):
            try:
                found = window.find(prediction_id)
                if (found.number, found.row) in seen or window.has_feedback(found):
                    raise FeedbackRefused(
                        409, "duplicate", f"id {prediction_id!r} has feedback already"
                    )
                task, classes = self.label_spaces.get((name, found.version), (CLASSIFICATION, None))
                checked = check_label(label, task, classes)
            except FeedbackRefused as refused:
                if batch:
                    raise FeedbackRefused(
                        refused.status, refused.reason, refused.message, index
                    ) from None
                raise
            seen.add((found.number, found.row))
            joined = Joined(
                prediction_id, found.version, found.prediction, checked, found.at, found.row
            )
            judged.append((found, joined))
        return judged

    def commit_feedback(self, name: str, judged: list[Judged]) -> list[Joined]:
        """Mark, count and log items `judge_feedback` accepted (in the same turn of the
        event loop: nothing may come between)."""
        window = self.windows[name]
        for found, item in judged:
            window.mark(found)
            self._count_feedback(name, item)
        joined_items = [item for _, item in judged]
        log = self.logs.get(name)
        if log is not None:
            log.record_feedback(joined_items)
        return joined_items

    def _count_feedback(self, name: str, item: Joined) -> None:
        task, _ = self.label_spaces.get((name, item.version), (CLASSIFICATION, None))
        outcome, score = outcome_of(task, item.prediction, item.label)
        scores = self.live.get((name, item.version))
        if scores is None:
            scores = self.live[(name, item.version)] = LiveScores(self.config.live_accuracy_rows)
        scores.add(score)
        self.metrics.count_feedback(name, str(item.version), outcome, score)

    # ---- admin -------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, object]:
        model = self.model(name)
        self._expire_warm(model)
        return {
            "model": name,
            "state": {k: v for k, v in model.state.__dict__.items() if k != "history"},
            "loaded_versions": sorted(model.versions),
            "stats": {str(v): s.stats.summary() for v, s in model.versions.items()},
            "sha256": {str(v): s.sha256 for v, s in model.versions.items()},
            "generation": model.state.generation,
            "record_error": self.record_errors.get(name),
            "sanitization": model.sanitizer.setting.describe() if model.sanitizer else "off",
        }

    def set_rollout(
        self,
        name: str,
        mode: Mode,
        candidate: int | None,
        percent: float,
        mirror_percent: float = 0.0,
    ) -> dict[str, object]:
        """Commit a split. The candidate must have passed its gates and verify by sha256."""
        model = self.model(name)
        new_state = RolloutState(
            model=name,
            stable_version=model.state.stable_version,
            candidate_version=candidate,
            mode=mode,
            candidate_percent=percent if mode == "canary" else 0.0,
            mirror_percent=mirror_percent,
            warm_version=model.state.warm_version,
            warm_until=model.state.warm_until,
            generation=model.state.generation,
        )
        try:
            new_state.validate()
        except StateError as error:
            raise RequestError(422, str(error)) from None
        if candidate is not None:
            try:
                model.versions[candidate] = self._verified(model, candidate)
            except ChassisError as error:
                raise RequestError(409, str(error)) from None
        save_state(self.config.state_dir, new_state)
        previous, model.state = model.state, new_state
        self._changed(model, previous, "admin.rollout")
        self._unload_unused(model)
        return self.status(name)

    def switch(self, name: str, mirror_percent: float = 0.0) -> dict[str, object]:
        """Blue-green: the idle color becomes live in one assignment; the old stays warm
        (and, with `mirror_percent`, keeps running that share of requests for comparison)."""
        model = self.model(name)
        state = model.state
        if state.mode != "blue-green" or state.candidate_version is None:
            raise RequestError(409, f"{name!r} is not in blue-green mode; nothing to switch to")
        new_state = RolloutState(
            model=name,
            stable_version=state.candidate_version,
            mode="stable",
            mirror_percent=mirror_percent,
            warm_version=state.stable_version,
            warm_until=time.time() + self.config.keep_warm_seconds,
            generation=state.generation,
            follows_champion=False,
        )
        try:
            new_state.validate()
        except StateError as error:
            raise RequestError(422, str(error)) from None
        save_state(self.config.state_dir, new_state)
        model.state = new_state  # one reference swap: a request sees the old or the new state
        self._changed(model, state, "admin.switch")
        return self.status(name)

    def rollback(self, name: str) -> dict[str, object]:
        """Candidate traffic to 0 at once; after a switch, back to the warm color."""
        model = self.model(name)
        state = model.state
        if state.mode == "stable" and state.warm_version in model.versions:
            new_state = RolloutState(
                model=name,
                stable_version=state.warm_version,
                generation=state.generation,
            )
        else:
            new_state = RolloutState(
                model=name, stable_version=state.stable_version, generation=state.generation
            )
        save_state(self.config.state_dir, new_state)
        model.state = new_state
        self._changed(model, state, "admin.rollback")
        self._unload_unused(model)
        return self.status(name)

    def promote_candidate(self, name: str) -> dict[str, object]:
        """After a successful canary: the candidate becomes the stable version."""
        model = self.model(name)
        state = model.state
        if state.candidate_version is None:
            raise RequestError(409, f"{name!r} has no candidate to promote")
        new_state = RolloutState(
            model=name, stable_version=state.candidate_version, generation=state.generation
        )
        save_state(self.config.state_dir, new_state)
        model.state = new_state
        self._changed(model, state, "admin.promote")
        self._unload_unused(model)
        return self.status(name)

    # ---- the fleet's rollout record ------------------------------------------------------

    def _read_record(self, name: str) -> RolloutRecord | None:
        try:
            return self.registry.read_rollout_record(name)
        except RecordError as error:
            # A record this version cannot read: keep serving what is verified, and say so.
            self.record_errors[name] = str(error)
            self._say_once(
                f"record:{name}", logging.ERROR, RECORD_UNREADABLE, model=name, error=str(error)
            )
            return None
        self.said.pop(f"record:{name}", None)

    def sync(self, name: str) -> bool:
        """Serve the rollout record's split if its generation is not the one served, or
        the champion alone once the split's lease has passed (its rollout is gone); then
        also try to end the orphan (one replica's compare-and-set wins). Returns whether
        anything changed. One pass at a time: an admin sync that meets the poll's pass
        waits for it and then finds the record applied."""
        with self.syncing:
            self.follow_sanitization(name)
            return self._sync(name)

    def follow_sanitization(self, name: str, model: ServedModel | None = None) -> None:
        """Apply the model's sanitization setting as the registry has it (on the registry
        poll, an admin sync and at start). A setting that cannot be read or does not fit the
        model (a text model, other features) leaves the current one, and is said once."""
        model = model or self.model(name)
        subject = f"sanitization:{name}"
        try:
            setting = self.registry.read_sanitization(name)
            if setting is None or not setting.on:
                sanitizer = None
            elif model.reads_text:
                raise ChassisError("a text model reads no numbers to clip or fill")
            elif setting.features != model.versions[model.state.stable_version].feature_names:
                raise ChassisError(
                    f"its features {setting.features[:3]}... are not the served version's"
                )
            elif model.sanitizer is not None and setting.same_setting(model.sanitizer.setting):
                return
            else:
                metrics = self.metrics
                sanitizer = Sanitizer(
                    setting,
                    lambda feature, action, n: metrics.count_sanitized(name, feature, action, n),
                    lambda reason, rows: metrics.count_sanitization_refused(name, reason, rows),
                )
        except ChassisError as error:
            self._say_once(
                subject, logging.WARNING, SANITIZATION_NOT_APPLIED, model=name, error=str(error)
            )
            return
        self.said.pop(subject, None)
        if model.sanitizer is None and sanitizer is None:
            return  # off and still off
        model.sanitizer = sanitizer
        if sanitizer is None:
            self.metrics.sanitization_modes.pop(name, None)
        else:
            self.metrics.sanitization_modes[name] = sanitizer.setting.mode
        event(
            logger,
            logging.INFO,
            SANITIZATION_CHANGED,
            model=name,
            sanitization=sanitizer.setting.describe() if sanitizer else "off",
            set_by=sanitizer.setting.by if sanitizer else None,
        )

    def _sync(self, name: str) -> bool:
        model = self.model(name)
        record = self._read_record(name)
        if record is None:
            return False
        now = time.time()
        orphaned = lease.expired(record, now)
        state = model.state
        champion_only = (
            state.mode == "stable"
            and state.follows_champion
            and state.candidate_version is None
            and state.warm_version is None
        )
        changed = record.generation != state.generation or (orphaned and not champion_only)
        if changed:
            self._apply_record(model, record, now)
            self.record_errors.pop(name, None)
        if orphaned:
            try:
                end_orphan(self.registry, name, record, f"gateway replica on {this_process()}", now)
            except Exception as error:  # the champion is served already; next sync retries
                event(
                    logger,
                    logging.WARNING,
                    ORPHAN_NOT_ENDED,
                    model=name,
                    generation=record.generation,
                    owner=record.owner,
                    error=f"{type(error).__name__}: {error}",
                )
        return changed

    def _apply_record(
        self, model: ServedModel, record: RolloutRecord, now: float | None = None
    ) -> None:
        """Load and verify every version the record names (candidates must have passed
        their gates), then switch to it in one assignment; on any failure nothing changes.
        A split whose lease has passed is never applied: the champion alone is (lease.py)."""
        record = lease.served_split(record, time.time() if now is None else now)
        name = model.name
        stable = record.stable_version
        if stable is None:
            stable = self.registry.version_for_alias(name, "champion")
            if stable is None:
                raise ChassisError(f"{name!r} has no champion to serve")
        warm = record.warm_version
        needed = [v for v in (stable, record.candidate_version, warm) if v is not None]
        loaded = {v: self._verified(model, v) for v in needed}
        new_state = RolloutState(
            model=name,
            stable_version=stable,
            candidate_version=record.candidate_version,
            mode=cast(Mode, record.mode),  # record.validate() checked it is one of MODES
            candidate_percent=record.percent if record.mode == "canary" else 0.0,
            mirror_percent=record.mirror_percent,
            warm_version=warm,
            warm_until=time.time() + self.config.keep_warm_seconds if warm else 0.0,
            generation=record.generation,
            follows_champion=record.mode == "stable" and record.stable_version is None,
            lease_until=lease.expires_at(record) or 0.0,
        ).validate()
        model.versions.update(loaded)
        save_state(self.config.state_dir, new_state)
        previous, model.state = model.state, new_state
        if model.name in self.models:  # at start, `_serve` says what it serves
            self._changed(model, previous, "record")
        self._unload_unused(model)

    def end_orphaned_locally(self, model: ServedModel, now: float) -> bool:
        """Stop serving a split whose lease ended, from this replica's own copy of it, with
        no registry read (which may be what fails): the stable version alone serves."""
        if not model.state.orphaned(now):
            return False
        previous = model.state
        model.state = model.state.stable_only()
        self._changed(model, previous, "lease_ended")
        save_state(self.config.state_dir, model.state)
        self._unload_unused(model)
        return True

    def sync_all(self) -> list[str]:
        """One pass over every served model; failures keep the current split serving."""
        moved: list[str] = []
        for name in list(self.models):
            if self.end_orphaned_locally(self.models[name], time.time()):
                moved.append(name)
            try:
                if self.sync(name):
                    moved.append(name)
                self.said.pop(f"sync:{name}", None)
            except ChassisError as error:
                self._say_once(
                    f"sync:{name}",
                    logging.WARNING,
                    SPLIT_NOT_APPLIED,
                    model=name,
                    source="record",
                    generation=None,
                    error=str(error),
                )
        return moved

    def follow_champion(self, name: str) -> bool:
        """Serve the registry's champion if it moved (by hand, or by `chassis rollback`).

        Only between rollouts: during a rollout, and while a switched-out color is kept
        warm, the rollout flow owns the split. Returns whether the stable version changed.
        """
        model = self.model(name)
        self._expire_warm(model)
        if model.state.mode != "stable" or not model.state.follows_champion:
            return False  # a rollout (or a blue-green switch's live window) is in flight
        champion = self.registry.version_for_alias(name, "champion")
        if champion is None or champion == model.state.stable_version:
            self.metrics.set_champion_mismatch(name, None)
            return False
        try:
            served = self._verified(model, champion)
        except ChassisError as error:
            # Keep serving what verified, and say loudly that the alias points elsewhere:
            # /readyz, the chassis_champion_mismatch gauge and its alert name both versions.
            self.metrics.set_champion_mismatch(
                name, (champion, model.state.stable_version, str(error))
            )
            raise
        self.metrics.set_champion_mismatch(name, None)
        model.versions[champion] = served
        new_state = RolloutState(
            model=name, stable_version=champion, generation=model.state.generation
        )
        save_state(self.config.state_dir, new_state)
        previous, model.state = model.state, new_state
        self._changed(model, previous, "champion")
        self._unload_unused(model)
        return True

    def follow_champions(self) -> list[str]:
        """One pass over every served model; failures keep the current version serving."""
        moved: list[str] = []
        for name in list(self.models):
            try:
                if self.follow_champion(name):
                    moved.append(name)
                self.degraded.pop(name, None)  # the registry answered: no longer degraded
                self.said.pop(f"champion:{name}", None)
            except ChassisError as error:
                # e.g. a tampered champion: keep serving what was verified, and say why.
                self._say_once(
                    f"champion:{name}",
                    logging.WARNING,
                    CHAMPION_NOT_FOLLOWED,
                    model=name,
                    serving=self.models[name].state.stable_version,
                    error=str(error),
                )
        return moved

    def reset_stats(self, name: str) -> None:
        for served in self.model(name).versions.values():
            served.stats = VersionStats()

    def _expire_warm(self, model: ServedModel) -> None:
        if model.state.warm_version is not None and time.time() > model.state.warm_until:
            previous = dataclasses.replace(model.state)
            model.state.warm_version = None
            model.state.follows_champion = True
            self._changed(model, previous, "warm_expired")
            self._unload_unused(model)

    def _unload_unused(self, model: ServedModel) -> None:
        keep = {model.state.stable_version, model.state.candidate_version, model.state.warm_version}
        # A kept cascade may run its full tier on a dropped version's batcher (the full model
        # was stable when the cascade loaded): that batcher stays open; a dropped cascade's
        # own full-tier batcher is closed with it unless a kept version uses it.
        kept = [served for version, served in model.versions.items() if version in keep]
        in_use = {id(s.batcher) for s in kept} | {
            id(s.cascade.full) for s in kept if s.cascade is not None and s.cascade.full
        }
        for version in list(model.versions):
            if version not in keep:
                dropped = model.versions.pop(version)
                full = dropped.cascade.full if dropped.cascade is not None else None
                for batcher in (dropped.batcher, full):
                    if batcher is not None and id(batcher) not in in_use:
                        in_use.add(id(batcher))  # closed once
                        self._close_later(batcher)
                if self.result_cache is not None:
                    self._on_loop(
                        functools.partial(self.result_cache.forget_version, model.name, version)
                    )

    def _close_later(self, batcher: MicroBatcher) -> None:
        """Stop a dropped version's batcher on the event loop, wherever this runs: the
        registry sync and the champion follower run on worker threads, and a batcher left
        running there would keep its ONNX Runtime session (and memory) forever."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return  # no loop ever served requests: no batcher worker was started

        def close() -> None:
            task = loop.create_task(batcher.close())
            self.background.add(task)
            task.add_done_callback(self.background.discard)

        if _running_loop() is loop:
            close()
        else:
            loop.call_soon_threadsafe(close)

    def _on_loop(self, call: Callable[[], object]) -> None:
        """Run `call` on the event loop's thread (now if this is it): what only the loop
        touches (the result cache) changed from a sync or follower thread."""
        loop = self.loop
        if loop is None or loop.is_closed() or _running_loop() is loop:
            call()
        else:
            loop.call_soon_threadsafe(call)


def split_key(state: RolloutState) -> tuple[object, ...]:
    """What a split change changes: a state with the same key serves the same way."""
    return (
        state.generation,
        state.mode,
        state.stable_version,
        state.candidate_version,
        state.candidate_percent,
        state.mirror_percent,
        state.warm_version,
    )


def split_fields(model: ServedModel) -> dict[str, Value]:
    """A model's split as log fields: each version by role with its sha256, the shares,
    the rollout record's generation (None: does not apply)."""
    state = model.state

    def digest(version: int | None) -> str | None:
        served = model.versions.get(version) if version is not None else None
        return served.sha256 if served is not None else None

    split = state.candidate_version is not None or state.warm_version is not None
    return {
        "model": model.name,
        "generation": state.generation,
        "mode": state.mode,
        "stable": state.stable_version,
        "stable_sha256": digest(state.stable_version),
        "candidate": state.candidate_version,
        "candidate_sha256": digest(state.candidate_version),
        "candidate_percent": state.candidate_percent if state.mode == "canary" else None,
        "mirror_percent": state.mirror_percent if split else None,
        "warm": state.warm_version,
        "warm_sha256": digest(state.warm_version),
        "lease_until": (
            datetime.datetime.fromtimestamp(state.lease_until, datetime.UTC).isoformat()
            if state.lease_until
            else None
        ),
    }


def row_by_row(call: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """`call` made one row at a time over a batch, its answers stacked in order."""

    def run(rows: np.ndarray) -> np.ndarray:
        if len(rows) == 1:
            return call(rows)
        return np.concatenate([call(rows[i : i + 1]) for i in range(len(rows))])

    return run


def relative_differences(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|values - reference| / |reference| per row, in float64 (a zero reference: the
    absolute difference over a tiny floor, so any difference from 0 counts as large)."""
    reference = reference.astype(np.float64)
    return np.abs(values.astype(np.float64) - reference) / np.maximum(np.abs(reference), 1e-12)


def _refusal_reason(error: TextInputError) -> str:
    """chassis_text_refused_total's reason for a text a version's encoder refused."""
    if error.problem.startswith("has "):
        return "too_long"
    return "empty" if error.problem == "is empty" else "not_text"


def _runs_on_loop(served: ServedVersion) -> bool:
    """Whether `served` answers on the event loop when nothing is queued: a fast model, or a
    cascade whose tiers are both fast models here (not an upstream)."""
    cascade = served.cascade
    if cascade is None:
        return served.batcher.inline
    return served.batcher.inline and cascade.full is not None and cascade.full.inline


def _width_error(served: ServedVersion, rows: np.ndarray) -> RequestError:
    return RequestError(422, f"rows must have {served.n_features} features, got {rows.shape[1]}")


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
