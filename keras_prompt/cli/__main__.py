"""`python -m keras_prompt.cli`: the `keras-prompt` command."""

import sys

from keras_prompt.cli import main

sys.exit(main())
