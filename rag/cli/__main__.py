import sys

from . import main

if __name__ == "__main__":  # importing the module (as the privacy test does) runs nothing
    sys.exit(main())
