"""``python -m attnlab ...`` (and ``torchrun ... -m attnlab train ...``): the ``attnlab`` command."""
from attnlab.cli import main

if __name__ == "__main__":
    main()
