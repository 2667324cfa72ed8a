"""``python -m landscape`` (and ``torchrun -m landscape``) runs the command-line interface."""
from cli.main import main

if __name__ == "__main__":
    main()
