"""Allow ``python -m tracecore``."""

from tracecore.cli.main import main

if __name__ == "__main__":
    main()
