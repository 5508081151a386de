import sys

from deepx_opt.cli import main

sys.exit(main())
