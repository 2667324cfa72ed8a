"""``python -m landscape`` (and ``torchrun -m landscape``) runs the command-line interface."""
from landscape_cli.main import main

if __name__ == "__main__":
    main()
