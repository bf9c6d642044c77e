"""`python -m gateway` starts the HTTP gateway."""

from gateway.app import main

if __name__ == "__main__":
    main()
