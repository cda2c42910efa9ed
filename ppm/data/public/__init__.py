"""Adapters from public datasets, in their published raw formats, to the canonical dataset.

- :mod:`ppm.data.public.movielens`: MovieLens 100K and 1M (optional posters).
- :mod:`ppm.data.public.hm`: H&M Personalized Fashion Recommendations (Kaggle).
- :mod:`ppm.data.public.mind`: MIND (Microsoft News).

Each writes a folder that passes ``python -m ppm.data.validate``, so the Beam jobs, the encoders,
training and evaluation run on it unchanged. Shared machinery (requests built from
interactions, time windows, counted warnings) is in :mod:`ppm.data.public.common`. None of the
three knows the order its candidates were displayed in: each writes ``positions: "none"`` in
``dataset.json``, every ``position`` 0 (the serving default) and ``rank`` null. No raw data
ships with this repository: the licences forbid redistribution.
"""
