"""Coverage-guided fuzz targets (atheris) for the sans-IO protocol parsers.

Each ``fuzz/<target>.py`` defines ``TestOneInput(data: bytes)``, which feeds one input to a parser
and asserts its properties: nothing escapes but the protocol's own typed errors (``S3Error`` or a
mapped ``StoreError`` whose S3 status is not 500; NBD's ``ProtocolError``), and the state machines
accept only what the spec allows. ``fuzz/corpus/<target>/`` holds the seed corpus (real client
traffic shapes, written by ``fuzz/make_seeds.py``; each target's docstring gives its input
format).

Targets: ``s3_router``, ``s3_sigv4``, ``s3_chunked``, ``s3_xml``, ``s3_policy``, ``s3_postform``,
``nbd_handshake``, ``nbd_transmission``.

Run one (libFuzzer flags pass through; new inputs go to the first corpus directory, so give it a
scratch copy and keep the committed seeds clean)::

    mkdir -p build/fuzz/s3_router && cp fuzz/corpus/s3_router/* build/fuzz/s3_router/
    .venv/bin/python fuzz/s3_router.py -max_total_time=60 build/fuzz/s3_router

Run them all for ``FUZZ_SECONDS`` each (300 by default): ``make fuzz FUZZ_SECONDS=60``. A crash
writes ``crash-<sha1>`` (under ``build/fuzz/`` with ``make fuzz``); replay it with
``.venv/bin/python fuzz/<target>.py build/fuzz/crash-...``, and once fixed, add it to the
target's corpus as a regression seed. ``tests/fuzz/`` replays every seed and runs each target
for a few seconds as part of ``make test``. Regenerate the seeds with
``.venv/bin/python fuzz/make_seeds.py``.
"""
