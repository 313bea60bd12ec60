from echopulse.cli import main

raise SystemExit(main())
