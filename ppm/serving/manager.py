"""The versions of each model: which to load, loading with retries, hot swap, status.

Follows TF Serving's ``AspiredVersionsManager`` (tensorflow/serving
``core/aspired_versions_manager.cc``, ``core/loader_harness.cc``,
``core/load_servables_fast.cc``):

- The version policy picks the *aspired* versions among the integer folders of a base path
  (``sources/storage_path/file_system_storage_path_source.cc``): with ``latest``, only the
  newest ``num_versions`` folders, whether or not they load.
- A failed load is retried ``max_num_load_retries`` times, ``load_retry_interval`` apart
  (TF Serving's ``--max_num_load_retries``, default 5, and ``--load_retry_interval_micros``,
  default 60 s; here 5 s, see :data:`DEFAULT_RETRY_INTERVAL_S`), so a version folder copied
  non-atomically (``saved_model.pb`` first, ``variables/`` seconds later) loads once complete.
  While retrying, the version is ``LOADING``. Once the retries are spent it is ``END`` with the
  error (``ServableState::kEnd`` with a non-OK status, what ``GetModelStatus`` reports) and is
  not tried again while the policy still wants it (``SetAspiredVersions`` adds a version only
  if it is not already managed); a new version number, or the folder leaving and coming back,
  starts over.
- A version no longer aspired is unloaded only once an aspired one is available, so a model
  never goes dark because its newest version is broken (the availability-preserving policy).
- At start-up every model must have a version available before the server accepts requests:
  TF Serving's ``ServerCore`` waits for the initial loads (retries included) and fails to
  start with "Some models did not become available" otherwise (``load_servables_fast.cc``);
  :meth:`ModelManager.wait_until_available` reports the same, and ``ppm.serving.server`` exits
  non-zero instead of printing its ready line. A model whose base path has no version yet is
  waited for while polling is on, as TF Serving does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import time

import grpc
import tensorflow as tf

from ppm.serving.servables import (
    Servable,
    ServingError,
    available_versions,
    wanted_versions,
    warm_up,
)

logger = logging.getLogger(__name__)
DEFAULT_MAX_LOAD_RETRIES = 5  # TF Serving's --max_num_load_retries default
# TF Serving waits 60 s between load attempts; a local server restarted by hand should say
# within half a minute (5 retries x 5 s) that its newest version is broken, and 25 s covers a
# non-atomic copy of the demo's models.
DEFAULT_RETRY_INTERVAL_S = 5.0


@dataclasses.dataclass
class VersionState:
    """A version's state as ``GetModelStatus`` reports it, and its load attempts.

    Attributes:
      state: ``LOADING``, ``AVAILABLE`` or ``END`` (unloaded, or failed for good).
      error: why the last load attempt failed ('' if none did).
      code: the gRPC code of that failure (TF's error codes are gRPC's).
      attempts: failed load attempts so far.
      retry_at: ``time.monotonic()`` of the next attempt while retrying, else None.
      aspired: whether the version policy still wants the version.
    """

    state: str
    error: str = ""
    code: int = 0
    attempts: int = 0
    retry_at: float | None = None
    aspired: bool = True


def _error_code(e: Exception) -> int:
    if isinstance(e, tf.errors.OpError):
        return e.error_code
    return grpc.StatusCode.UNKNOWN.value[0]


class ModelManager:
    """Serves the models of a ModelServerConfig, polling their base paths for versions.

    Args:
      model_configs: ``ModelConfig`` protos (:func:`ppm.serving.servables.read_model_config`).
      poll_seconds: how often base paths are listed (TF Serving's
        ``--file_system_poll_wait_seconds``); 0 lists them only at start and when :meth:`poll`
        is called (failed loads are still retried).
      max_num_load_retries: attempts after the first failed one.
      load_retry_interval: seconds between attempts.

    Raises:
      ValueError: a negative retry count or interval.
    """

    def __init__(self, model_configs, poll_seconds: float = 1.0,
                 max_num_load_retries: int = DEFAULT_MAX_LOAD_RETRIES,
                 load_retry_interval: float = DEFAULT_RETRY_INTERVAL_S):
        if max_num_load_retries < 0 or load_retry_interval < 0:
            raise ValueError("max_num_load_retries and load_retry_interval must be >= 0, got "
                             f"{max_num_load_retries} and {load_retry_interval}")
        self.configs = {m.name: m for m in model_configs}
        self.poll_seconds = poll_seconds
        self.max_num_load_retries = max_num_load_retries
        self.load_retry_interval = load_retry_interval
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._servables: dict[str, dict[int, Servable]] = {n: {} for n in self.configs}
        self._states: dict[str, dict[int, VersionState]] = {n: {} for n in self.configs}
        self._present: dict[str, list[int]] = {n: [] for n in self.configs}
        self._wanted: dict[str, list[int]] = {n: [] for n in self.configs}
        self._stop = threading.Event()
        self._thread = None

    # Loading ------------------------------------------------------------------------------
    def poll(self) -> None:
        """Lists the base paths, loads the versions the policies want, unloads the others."""
        with self._poll_lock:
            for name, config in self.configs.items():
                present = available_versions(config.base_path)
                wanted = wanted_versions(config.model_version_policy, present)
                self._present[name], self._wanted[name] = present, wanted
                if not present and not self._servables[name]:
                    logger.warning("No versions of servable %s found under base path %s", name,
                                   config.base_path)
                self._update(name, config, wanted)

    def retry(self) -> None:
        """Retries the failed loads that are due, without listing the base paths."""
        with self._poll_lock:
            for name, config in self.configs.items():
                self._update(name, config, self._wanted[name])

    def _update(self, name, config, wanted):
        states = self._states[name]
        with self._lock:
            for version, st in states.items():
                if version not in wanted:
                    st.aspired = False
                    if st.state == "LOADING":  # TF Serving cancels the retries
                        st.state, st.retry_at = "END", None
                        st.error = (f"load cancelled after {st.attempts} failed attempts "
                                    f"(last: {st.error}): the version policy no longer wants "
                                    "this version")
        for version in wanted:
            st = states.get(version)
            if version in self._servables[name]:
                continue
            if st is not None and st.aspired and st.state == "END":
                continue  # failed for good; a new number, or the folder coming back, retries
            if st is not None and st.aspired and st.retry_at and time.monotonic() < st.retry_at:
                continue
            attempts = st.attempts if st is not None and st.aspired else 0
            self._load(name, config, version, attempts)
        with self._lock:
            loaded = self._servables[name]
            # Unload only once a wanted version is available, so a model never goes dark.
            keep = set(wanted) & set(loaded) or set(loaded)
            for version in sorted(set(loaded) - keep):
                del loaded[version]  # in-flight requests still hold the object
                states[version] = VersionState("END", aspired=False)
                logger.info("Unloaded servable version {name: %s version: %d}", name, version)

    def _load(self, name, config, version, attempts):
        with self._lock:  # status() reads the states from request threads
            self._states[name][version] = VersionState("LOADING", attempts=attempts)
        path = os.path.join(config.base_path, str(version))
        try:
            servable = Servable(name, version, path)
            warmed = warm_up(servable)
        except Exception as e:  # noqa: BLE001 - a bad version must not stop the server
            attempts += 1
            error = f"{type(e).__name__}: {e}".strip()
            st = VersionState("LOADING", error, _error_code(e), attempts)
            if attempts > self.max_num_load_retries:
                st.state = "END"
                st.error = f"failed to load {path} after {attempts} attempts: {error}"
                logger.error("Loading servable: {name: %s version: %d} failed for good: %s",
                             name, version, st.error)
            else:
                st.retry_at = time.monotonic() + self.load_retry_interval
                logger.warning("Loading servable: {name: %s version: %d} failed (attempt %d of "
                               "%d), retrying in %.1f s: %s", name, version, attempts,
                               self.max_num_load_retries + 1, self.load_retry_interval, error)
            with self._lock:
                self._states[name][version] = st
            return
        with self._lock:
            self._servables[name][version] = servable
            self._states[name][version] = VersionState("AVAILABLE")
        logger.info("Successfully loaded servable version {name: %s version: %d} "
                    "(%d warm-up requests)", name, version, warmed)

    def _next_retry(self) -> float:
        with self._lock:
            due = [st.retry_at for states in self._states.values() for st in states.values()
                   if st.state == "LOADING" and st.retry_at is not None]
        return min(due, default=math.inf)

    def start(self) -> None:
        """Loads the initial versions (retries included), then polls in a background thread."""
        self.poll()
        while (due := self._next_retry()) < math.inf:
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.retry()
        self._thread = threading.Thread(target=self._run, name="version-poller", daemon=True)
        self._thread.start()

    def _run(self):
        next_poll = time.monotonic() + self.poll_seconds
        while True:
            due = self._next_retry()
            if self.poll_seconds > 0:
                due = min(due, next_poll)
            if self._stop.wait(min(max(due - time.monotonic(), 0.0), 1.0)):
                return
            try:
                if self.poll_seconds > 0 and time.monotonic() >= next_poll:
                    self.poll()
                    next_poll = time.monotonic() + self.poll_seconds
                elif self._next_retry() <= time.monotonic():
                    self.retry()
            except Exception:  # noqa: BLE001 - keep polling
                logger.exception("polling the model base paths failed")

    def interrupt(self) -> None:
        """Ends :meth:`start`'s retries and :meth:`wait_until_available` (from a signal)."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def unavailable(self) -> dict[str, tuple[bool, str]]:
        """``{model: (final, reason)}`` for the models that have no version to serve.

        ``final``: waiting cannot help (every wanted version failed for good, or there is no
        version and polling is off)."""
        out = {}
        with self._lock:
            for name, config in self.configs.items():
                if self._servables[name]:
                    continue
                wanted, present = self._wanted[name], self._present[name]
                states = self._states[name]
                if not wanted:
                    out[name] = (self.poll_seconds <= 0,
                                 f"no version found under base path {config.base_path}")
                    continue
                failed = [v for v in wanted if v in states and states[v].state == "END"]
                if len(failed) < len(wanted):
                    out[name] = (False, f"versions {wanted} are loading")
                    continue
                errors = "; ".join(f"version {v}: {states[v].error}" for v in failed)
                others = sorted(set(present) - set(wanted))
                hint = (f". Versions {others} are present but the version policy "
                        f"({config.model_version_policy.WhichOneof('policy_choice') or 'latest'})"
                        " does not ask for them: fix or remove the failed folders, or name a "
                        "version with model_version_policy { specific { versions: N } }"
                        if others else "")
                out[name] = (True, f"{errors}{hint}")
        return out

    def wait_until_available(self, timeout: float | None = None) -> dict[str, str]:
        """Waits until every model has a version to serve, or waiting cannot help.

        Returns:
          ``{model: reason}`` of the models still without a version ({} when all have one).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        logged = -math.inf
        while True:
            missing = self.unavailable()
            if not missing or any(final for final, _ in missing.values()) or (
                    deadline is not None and time.monotonic() >= deadline):
                return {name: reason for name, (_, reason) in missing.items()}
            if time.monotonic() - logged > 30:
                logger.info("Waiting for a version of %s", ", ".join(
                    f"{n} ({reason})" for n, (_, reason) in sorted(missing.items())))
                logged = time.monotonic()
            if self._stop.wait(0.1):
                return {name: reason for name, (_, reason) in missing.items()}

    # Lookup -------------------------------------------------------------------------------
    def resolve(self, model_spec) -> Servable:
        """The servable a ModelSpec asks for (latest, a version, or a version label)."""
        name = model_spec.name
        if name not in self.configs:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Servable not found for request: Latest({name})")
        choice = model_spec.WhichOneof("version_choice")
        with self._lock:
            loaded = self._servables[name]
            if choice == "version_label":
                label = model_spec.version_label
                labels = self.configs[name].version_labels
                if label not in labels:
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"Unrecognized servable version label: {label}")
                version = labels[label]
            elif choice == "version":
                version = model_spec.version.value
            else:
                if not loaded:
                    raise ServingError(grpc.StatusCode.NOT_FOUND,
                                       f"Servable not found for request: Latest({name})")
                return loaded[max(loaded)]
            if version not in loaded:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Servable not found for request: Specific({name}, {version})")
            return loaded[version]

    def status(self, name: str, version: int | None = None) -> dict[int, VersionState]:
        """``{version: state}`` of a model (TF Serving's GetModelStatus)."""
        if name not in self.configs:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        with self._lock:
            states = {v: dataclasses.replace(st) for v, st in self._states[name].items()}
        if version is not None:
            if version not in states:
                raise ServingError(grpc.StatusCode.NOT_FOUND,
                                   f"Could not find version {version} of model {name}")
            states = {version: states[version]}
        if not states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find any versions of model {name}")
        return states

    def loaded_versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._servables[name])
