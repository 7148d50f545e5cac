"""`python -m blockvault ...` is the `blockvault` command."""

from blockvault.cli.app import main

raise SystemExit(main())
