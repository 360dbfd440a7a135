"""The local web viewer: a FastAPI app over a cohort store (and a model), and the page it serves.

``data`` (what the API reads), ``slide_tiles`` (deep-zoom JPEG tiles cut lazily from the slides),
``kept`` (bounded caches), ``assets`` (where the page's third-party JavaScript lies),
``schemas`` (the JSON shapes), ``api`` (the routes) and ``hosts`` (the host names a viewer on
loopback answers for). Built and served by :mod:`tmescope.jobs.serve`.
"""
