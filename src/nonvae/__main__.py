from nonvae.cli import main

raise SystemExit(main())
