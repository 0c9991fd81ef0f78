"""The bodies of the ``harness`` commands (:mod:`harness.cli` holds the parser and ``main``).

:mod:`~harness.commands.prepare` holds the commands that read the experiment and its data
(``validate``, ``plan``, ``compose``, ``export-lm-eval``, ``schema``);
:mod:`~harness.commands.results` those that train, evaluate and judge cells (``run``,
``worker``, ``lm-eval``, ``gate``, ``report``); :mod:`~harness.commands.export` turns a GGUF
model into a checkpoint folder for ``student.model`` (``export-gguf``);
:mod:`~harness.commands.common` what they share.
Every heavy import stays inside the command that needs it, so ``validate`` and ``plan`` start
fast and ``worker`` loads only what the GPU machine has.
"""
