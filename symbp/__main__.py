from symbp.cli import main

raise SystemExit(main())
