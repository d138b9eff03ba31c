"""``python -m medgan <command>``; see :mod:`medgan.cli`."""

from medgan.cli import main

raise SystemExit(main())
