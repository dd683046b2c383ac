"""`python -m hf_bort.cli`, the same as the `hf-bort` console script."""

from . import main


raise SystemExit(main())
