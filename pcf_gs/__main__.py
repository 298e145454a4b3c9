from pcf_gs.cli import main

raise SystemExit(main())
