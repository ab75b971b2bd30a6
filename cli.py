"""`python cli.py ...` runs the same command line as the installed `lce` script."""

from lce.cli import main

if __name__ == "__main__":
    main()
