"""Development tools: the sandbox Asterisk, SIPp phones and the demo. Never imported by the daemon.

They build a chroot, run Asterisk and phones, and make throw-away databases for the e2e
tests, ``ctc sandbox``, ``ctc demo`` and ``bench/``. What they need travels with them:
the SIPp scenarios are package data (``scenarios/``), the Asterisk configuration is the
engine's ``dialplan/`` (found by :func:`engine.shared_data.shared_data_dir`).

- :mod:`~engine.devtools.sandbox`: ``Sandbox`` (up, down, status), built from
  :mod:`~engine.devtools.sandbox_root` (the mmdebstrap root),
  :mod:`~engine.devtools.apt_sources` (the mirror),
  :mod:`~engine.devtools.asterisk_process` (the chrooted Asterisk) and
  :mod:`~engine.devtools.host` (bounded commands, locks, mounts)
- :mod:`~engine.devtools.sipp`: one SIPp process playing one phone;
  :mod:`~engine.devtools.dtmf_caller`: a caller that keys in any digit string
- :mod:`~engine.devtools.databases`: create and drop a test or benchmark database
- :mod:`~engine.devtools.demo`: ``ctc demo``
- :mod:`~engine.devtools.docker_stack`: what ``asterisk-docker/`` builds from (the local
  Debian base image, the engine's wheels; ``asterisk-docker/prepare``);
  :mod:`~engine.devtools.docker_daemon`: the Docker engine its test runs on
"""
