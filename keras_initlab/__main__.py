"""``python -m keras_initlab``: the ``keras-initlab`` command (see ``keras_initlab.cli``)."""

import sys

from keras_initlab.cli import main

if __name__ == "__main__":
    sys.exit(main())
