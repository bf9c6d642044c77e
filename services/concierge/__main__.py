from services.concierge.app import main

if __name__ == "__main__":
    main()
