from fgmd.cli.main import main

raise SystemExit(main())
