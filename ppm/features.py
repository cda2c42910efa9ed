"""The feature schema of training examples: the single source of truth.

The Beam example writer (`beam_jobs.build_examples`), the tf.data parser
(`ppm.data.pipeline`), the models' inputs and the serving signature are all derived from
:class:`FeatureSchema`. One example is one displayed candidate (one row of `events.parquet`),
with the user's behaviour history strictly before the event (docs/data.md, "Training
examples (Beam)").

History features are stored unpadded in the TFRecords (most recent first, at most
``max_history`` long) and padded to ``max_history`` by the parser: ``""`` for string ids and
``0`` for integers. ``hist_len`` gives the true length, from which models build their padding
mask (PPM §3.1.2).

User profile features (the paper's ``D``, PPM §3.2.3) depend on the data source: they are the
``user_*`` columns of `events.parquet`, recorded in the schema that the Beam job writes beside
the examples (`schema.json`), so a reader never guesses them.

``hist_session`` numbers the history's sessions (DSIN §4.1, Feng et al. 2019, arXiv:1905.06482):
0 for the most recent session, counting up into the past (:func:`session_ids`). Examples
written before it existed have a ``schema.json`` without it; such a schema loads with
``sessions=False``, i.e. exactly the features (and serving inputs) it was written with.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

SCHEMA_FILE = "schema.json"
DEFAULT_MAX_HISTORY = 50

# Roles of a feature. Models read `target`, `history`, `context` and `profile` features;
# `label`s are training targets; `meta` features identify an example (evaluation, GAUC,
# cold-start buckets) and are never model inputs.
TARGET, HISTORY, CONTEXT, PROFILE, LABEL, META = (
    "target", "history", "context", "profile", "label", "meta")
ROLES = (TARGET, HISTORY, CONTEXT, PROFILE, LABEL, META)

STRING, INT64, FLOAT = "string", "int64", "float32"

LABELS = ("click", "order", "cart")
# GRACE's rank-consistency tasks (§2.3, Eq. 6): a task named "top<k>" learns whether the ranking
# model put the candidate in its top k, a label derived from the examples' `rank` when a batch
# is read (no column to keep in sync): derived_labels().
TOP_K_TASK = re.compile(r"^top([1-9][0-9]*)$")
ID_FIELDS = ("item_id", "shop_id", "brand_id", "category_id")

# Recency buckets of the history (PPM §3.1.2, E_recency): the age of a past click relative to
# the event, in seconds. Bucket b holds ages in [edges[b-1], edges[b]); bucket 0 is under a
# minute and the last bucket is older than the last edge.
RECENCY_BUCKET_EDGES_S = (
    60, 600, 3600, 6 * 3600, 86400, 3 * 86400, 7 * 86400, 14 * 86400, 30 * 86400,
    90 * 86400)
NUM_RECENCY_BUCKETS = len(RECENCY_BUCKET_EDGES_S) + 1

# DSIN §4.1: behaviours more than 30 minutes apart belong to different sessions.
SESSION_GAP_S = 1800
HIST_SESSION = "hist_session"
QUERY, RANKER_SCORE = "query", "ranker_score"  # features of search examples (GRACE)
# Model inputs that only some models read (``RankingModel.extra_inputs``): a model's serving
# signature asks for them only if it reads them, and the client ignores them in a request to a
# model that does not, so one request format serves every model.
OPTIONAL_INPUTS = (HIST_SESSION,)


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature of a training example.

    Attributes:
      name: feature key in the tf.train.Example and in the model's input dict.
      dtype: ``"string"``, ``"int64"`` or ``"float32"`` (the tf.train.Example kinds).
      role: one of :data:`ROLES`.
      sequence: True for history features, shape ``[max_history]`` after parsing.
      default: value of a missing scalar or padding of a sequence.
    """

    name: str
    dtype: str
    role: str
    sequence: bool = False

    def __post_init__(self):
        if self.dtype not in (STRING, INT64, FLOAT):
            raise ValueError(f"Feature {self.name!r}: dtype must be string, int64 or float32, "
                             f"got {self.dtype!r}")
        if self.role not in ROLES:
            raise ValueError(f"Feature {self.name!r}: role must be one of {ROLES}, "
                             f"got {self.role!r}")

    @property
    def default(self):
        return {STRING: "", INT64: 0, FLOAT: 0.0}[self.dtype]

    def tf_dtype(self):
        """The TensorFlow dtype of the feature's values."""
        import tensorflow as tf

        return {STRING: tf.string, INT64: tf.int64, FLOAT: tf.float32}[self.dtype]


def recency_bucket(age_seconds):
    """Maps ages in seconds (scalar or array, >= 0) to recency bucket ids (int64)."""
    return np.searchsorted(np.asarray(RECENCY_BUCKET_EDGES_S), np.asarray(age_seconds),
                           side="right").astype(np.int64)


def session_ids(timestamps_most_recent_first: Sequence[int],
                gap_seconds: int = SESSION_GAP_S) -> list[int]:
    """Session index of each behaviour of a history (DSIN §4.1).

    A new session starts where two consecutive behaviours are more than ``gap_seconds``
    apart (a gap of exactly ``gap_seconds`` stays in the session). Index 0 is the most recent
    session, counting up into the past. The gap between the event itself and its most recent
    behaviour plays no part: the history's first behaviour is always in session 0.

    Args:
      timestamps_most_recent_first: unix seconds, non-increasing.
      gap_seconds: the longest gap inside one session (DSIN: 30 minutes).

    Returns:
      One non-decreasing session index per timestamp (``[]`` for an empty history).

    Raises:
      ValueError: ``gap_seconds`` < 0, or the timestamps are not most recent first.
    """
    if gap_seconds < 0:
        raise ValueError(f"gap_seconds must be >= 0, got {gap_seconds}")
    ids, session = [], 0
    for k, ts in enumerate(timestamps_most_recent_first):
        if k:
            gap = timestamps_most_recent_first[k - 1] - ts
            if gap < 0:
                raise ValueError(f"timestamps must be most recent first; {ts} at index {k} "
                                 f"is later than {timestamps_most_recent_first[k - 1]}")
            session += int(gap > gap_seconds)
        ids.append(session)
    return ids


def _base_features(sessions: bool = True, search: bool = False) -> tuple[Feature, ...]:
    feats = [Feature(name, STRING, TARGET) for name in ID_FIELDS]
    feats.append(Feature("position", INT64, CONTEXT))
    if search:
        feats.append(Feature(QUERY, STRING, CONTEXT))
    feats += [Feature(f"hist_{name}", STRING, HISTORY, sequence=True) for name in ID_FIELDS]
    feats.append(Feature("hist_position", INT64, HISTORY, sequence=True))
    feats.append(Feature("hist_recency", INT64, HISTORY, sequence=True))
    if sessions:
        feats.append(Feature(HIST_SESSION, INT64, HISTORY, sequence=True))
    feats.append(Feature("hist_len", INT64, HISTORY))
    feats += [Feature(name, INT64, LABEL) for name in LABELS]
    feats += [
        Feature("request_id", STRING, META),
        Feature("user_id", STRING, META),
        Feature("ts", INT64, META),
        # The upstream ranker's rank of the candidate (GRACE); -1 when unknown.
        Feature("rank", INT64, META),
        # How often the target item appears in the training window (cold-start buckets).
        Feature("item_freq", INT64, META),
    ]
    if search:
        feats += [
            # displayed, recalled or sampled (ppm.data.canonical.EXPOSURES)
            Feature("exposure", STRING, META),
            # The ranking model's score (GRACE's distillation baseline); -1 when unknown.
            Feature(RANKER_SCORE, FLOAT, META),
        ]
    return tuple(feats)


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
    """All features of a set of training examples.

    Attributes:
      max_history: maximum number of history items per example (PPM uses the latest 50).
      profile_features: names of the user profile features (``user_*`` string columns).
      sessions: whether the examples carry ``hist_session`` (DSIN §4.1). False only for
        examples written before it existed (:meth:`from_dict` reads it off their feature list).
      search: examples of a search pre-ranking log (GRACE; events with an ``exposure``
        column): they also carry the ``query`` text (a model input), ``exposure`` and
        ``ranker_score`` (meta).
    """

    max_history: int = DEFAULT_MAX_HISTORY
    profile_features: tuple[str, ...] = ()
    sessions: bool = True
    search: bool = False

    def __post_init__(self):
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        object.__setattr__(self, "profile_features", tuple(self.profile_features))
        for name in self.profile_features:
            if not name.startswith("user_"):
                raise ValueError(f"Profile feature {name!r} must start with 'user_'")
            if name == "user_id":
                raise ValueError("user_id is an identifier, not a profile feature")

    @functools.cached_property
    def features(self) -> tuple[Feature, ...]:
        return _base_features(self.sessions, self.search) + tuple(
            Feature(name, STRING, PROFILE) for name in self.profile_features)

    def by_role(self, *roles: str) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.role in roles)

    @functools.cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def __getitem__(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"No feature {name!r} in the schema; known: {self.names}")

    # --- (de)serialisation -------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"max_history": self.max_history, "profile_features": list(self.profile_features),
                "features": [dataclasses.asdict(f) for f in self.features]}

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureSchema:
        """The schema of :meth:`to_dict`'s output, also of ``schema.json`` files written
        before ``hist_session`` existed: their feature list lacks it, so the schema keeps
        their features (parser, model inputs and serving signature as they were)."""
        stored = d.get("features")
        sessions = stored is None or any(f.get("name") == HIST_SESSION for f in stored)
        search = stored is not None and any(f.get("name") == QUERY for f in stored)
        return cls(max_history=int(d["max_history"]),
                   profile_features=tuple(d.get("profile_features", ())), sessions=sessions,
                   search=search)

    def save(self, path: str) -> None:
        from ppm.data.canonical import open_file

        with open_file(path, "wb") as f:
            f.write(json.dumps(self.to_dict(), indent=2).encode())

    @classmethod
    def load(cls, path: str) -> FeatureSchema:
        from ppm.data.canonical import open_file

        with open_file(path) as f:
            return cls.from_dict(json.loads(f.read().decode()))

    # --- tf.data parsing ------------------------------------------------------------------

    def parsing_spec(self) -> dict:
        """Feature spec for `tf.io.parse_example` (histories as ragged, padded later)."""
        import tensorflow as tf

        spec = {}
        for f in self.features:
            dtype = f.tf_dtype()
            if f.sequence:
                spec[f.name] = tf.io.RaggedFeature(dtype=dtype, row_splits_dtype=tf.int64)
            else:
                spec[f.name] = tf.io.FixedLenFeature([], dtype, default_value=f.default)
        return spec

    # --- tf.train.Example writing ---------------------------------------------------------

    def to_example(self, values: Mapping):
        """Builds a tf.train.Example from a dict holding every feature of the schema.

        Raises:
          KeyError: a feature is missing from ``values``.
          ValueError: a history is longer than ``max_history`` or lengths disagree.
          TypeError: a string feature holds something other than str or bytes.
        """
        import tensorflow as tf

        missing = [n for n in self.names if n not in values]
        if missing:
            raise KeyError(f"Example is missing features {missing}")
        hist_len = int(values["hist_len"])
        example = tf.train.Example()
        feature = example.features.feature
        for f in self.features:
            v = values[f.name]
            if f.sequence:
                if len(v) != hist_len or hist_len > self.max_history:
                    raise ValueError(
                        f"{f.name} has {len(v)} values, hist_len is {hist_len}, "
                        f"max_history is {self.max_history}")
            else:
                v = (v,)
            if f.dtype == STRING:
                feature[f.name].bytes_list.value.extend([_to_bytes(f.name, x) for x in v])
            elif f.dtype == FLOAT:
                feature[f.name].float_list.value.extend([float(x) for x in v])
            else:
                feature[f.name].int64_list.value.extend([int(x) for x in v])
        return example


def _to_bytes(name: str, x) -> bytes:
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, bytes):
        return x
    raise TypeError(f"Feature {name!r} is a string feature, got {type(x).__name__} {x!r}")


def profile_columns(columns: Iterable[str]) -> tuple[str, ...]:
    """The user profile columns (``user_*`` except ``user_id``) among ``columns``, sorted."""
    return tuple(sorted(c for c in columns if c.startswith("user_") and c != "user_id"))


def model_input_names(schema: FeatureSchema, exclude: Sequence[str] = ()) -> tuple[str, ...]:
    """Names of the features a ranking model may read (no labels, no meta)."""
    return tuple(f.name for f in schema.by_role(TARGET, HISTORY, CONTEXT, PROFILE)
                 if f.name not in exclude)



def top_k(task: str) -> int | None:
    """k of a rank-consistency task name (``"top10"`` -> 10), else None."""
    match = TOP_K_TASK.match(str(task))
    return int(match.group(1)) if match else None


def is_derived(task: str) -> bool:
    """Whether a task's label is derived from the examples' features when a batch is read
    (:func:`derived_labels`), not a label column: ``top<k>`` and ``ranker_score``."""
    return bool(top_k(task)) or task == RANKER_SCORE


def derived_labels(tasks, feats: dict, labels: dict) -> dict:
    """``labels`` plus the label of every derived task of ``tasks`` that it lacks:

    - ``top<k>`` from ``feats["rank"]`` (GRACE Eq. 6: 1 when ``0 <= rank < k``, the rank
      0-based as in the canonical format; an unknown rank, -1, is in no top k);
    - ``ranker_score`` (GRACE Table 1's distillation baseline, a soft label) from
      ``feats["ranker_score"]``, the ranking model's probability; an unknown score (-1: an item
      recall did not return) is 0.

    float32 [B] each."""
    wanted = [(t, top_k(t)) for t in tasks if t not in labels and top_k(t)]
    distill = RANKER_SCORE in tasks and RANKER_SCORE not in labels
    if not wanted and not distill:
        return labels
    out = dict(labels)
    if distill:
        import tensorflow as tf  # noqa: PLC0415 - this module imports no TensorFlow on load

        if RANKER_SCORE not in feats:
            raise ValueError("the ranker_score task needs examples of a search log (built from "
                             "events with ranker_score)")
        out[RANKER_SCORE] = tf.maximum(tf.cast(feats[RANKER_SCORE], tf.float32), 0.0)
    if not wanted:
        return out
    from ppm import losses  # noqa: PLC0415 - this module imports no TensorFlow on load

    values = losses.topk_labels(feats["rank"], [k for _, k in wanted])
    return {**out, **{t: values[:, i] for i, (t, _) in enumerate(wanted)}}
